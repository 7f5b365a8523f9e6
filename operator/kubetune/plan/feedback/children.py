"""What a FeedbackLoop creates: its ``feedback`` Jobs and the kubetune resources of a cycle.

A cycle ``N`` of loop ``L`` writes its collected feedback to ``{store}/{ns}/feedbackloop/L/cN``
(``feedback.jsonl`` and ``cursor.json``), then owns four resources named ``L-cN``:

* a **Dataset**: the base Dataset's spec with the feedback file as one more source, so the
  feedback is cleaned, de-duplicated, PII-redacted and filtered exactly like the base data;
* a **FinetuneJob**: the loop's training template, ``from`` the champion's training model;
* an optional **Compression** of that FinetuneJob (the loop's template);
* an **Evaluation** of the challenger (the Compression, else the FinetuneJob) against the
  champion as its baseline; its gates decide the promotion.

With ``spec.training.preference`` (:mod:`kubetune.plan.feedback.preference`) a cycle also owns a
**preference Dataset** and a **preference FinetuneJob** named ``L-cN-pref`` (label
``kubetune.dev/cycle-stage: preference``): the collected pairs or rated answers in schema
``preference``, trained with the chosen algorithm from the SFT FinetuneJob (``after-sft``) or
from the champion (``instead-of-sft``, then there is no SFT Dataset or FinetuneJob). The
preference FinetuneJob is then the one compressed, evaluated and promoted.

Every object is named deterministically, labelled with the loop and the cycle, and controlled
by the loop (owner reference), so deleting the loop deletes its cycles.
"""

from __future__ import annotations

from typing import Any

from kubetune.api.common import API_VERSION, Credentials, Resources, RetryPolicy, RunSettings
from kubetune.api.contract import (
    ANNOTATION_BASELINE_CHAMPION,
    LABEL_CYCLE,
    LABEL_CYCLE_STAGE,
    LABEL_DRIFT_CHECK,
    LABEL_FEEDBACK_LOOP,
)
from kubetune.api.feedback import FeedbackLoopSpec
from kubetune.api.resources import AnyResource, Dataset, FeedbackLoop
from kubetune.api.steps import CURSOR_FILE, FEEDBACK_FILE, FeedbackStepSpec
from kubetune.plan import naming, runs
from kubetune.plan.feedback.preference import PreferenceChoice
from kubetune.plan.jobs import JobRequest, build_children
from kubetune.plan.world import OperatorConfig

LOOP_LABEL = LABEL_FEEDBACK_LOOP
CYCLE_LABEL = LABEL_CYCLE
DRIFT_LABEL = LABEL_DRIFT_CHECK  # value: the check's time slot
BASELINE_ANNOTATION = ANNOTATION_BASELINE_CHAMPION
PREFERENCE_STAGE = "preference"  # the LABEL_CYCLE_STAGE value of the preference resources
CHALLENGER_ALIAS = "challenger"  # MLflow alias / OCI tag of a cycle's challenger (publish)
FEEDBACK_RESOURCES = Resources(cpu="1", memory="2Gi")
FEEDBACK_DEADLINE_SECONDS = 3600


def cycle_id(number: int) -> str:
    """``c<N>``: the run id of cycle N (its collect Job) and the suffix of its resources."""
    return f"c{number}"


def cycle_of(run_id: str | None) -> int | None:
    """N of ``c<N>``, else None."""
    if run_id and run_id.startswith("c") and run_id[1:].isdigit():
        return int(run_id[1:])
    return None


def count_id(since_cycle: int, slot: int) -> str:
    """``s<cycle>-<slot>``: a count of the records since cycle ``since_cycle`` (0: none)."""
    return f"s{since_cycle}-{slot}"


def parse_count_id(run_id: str) -> tuple[int, int] | None:
    """(since cycle, slot) of a count run id, else None."""
    if not run_id.startswith("s") or "-" not in run_id:
        return None
    cycle, _, slot = run_id[1:].partition("-")
    return (int(cycle), int(slot)) if cycle.isdigit() and slot.isdigit() else None


def cycle_name(loop: FeedbackLoop, number: int) -> str:
    """``{loop}-c{N}``: the name of each of the cycle's resources (one per kind)."""
    return naming.dns_label(loop.name, keep_suffix=f"-{cycle_id(number)}")


def preference_name(loop: FeedbackLoop, number: int) -> str:
    """``{loop}-c{N}-pref``: the name of the cycle's preference Dataset and FinetuneJob."""
    return naming.dns_label(loop.name, keep_suffix=f"-{cycle_id(number)}-pref")


def role_of(resource: AnyResource | dict[str, Any]) -> str:
    """A cycle resource's (or manifest's) role: its kind, prefixed ``Preference`` for the
    preference stage's."""
    if isinstance(resource, dict):
        kind, labels = str(resource["kind"]), resource["metadata"].get("labels") or {}
    else:
        kind, labels = resource.kind, resource.metadata.labels
    return f"Preference{kind}" if labels.get(LABEL_CYCLE_STAGE) == PREFERENCE_STAGE else kind


def drift_name(loop: FeedbackLoop, slot: int) -> str:
    """``{loop}-drift-{slot}``: the Evaluation that re-scores the champion."""
    return naming.dns_label(loop.name, keep_suffix=f"-drift-{slot}")


def loop_dir(loop: FeedbackLoop, config: OperatorConfig) -> str:
    """``{store}/{namespace}/feedbackloop/{name}``: where the loop's feedback steps write."""
    store = config.artifact_store.rstrip("/")
    return f"{store}/{loop.namespace}/feedbackloop/{loop.name}"


def cycle_dir(loop: FeedbackLoop, number: int, config: OperatorConfig) -> str:
    """Where cycle N's collect step writes the feedback and the cursor."""
    return f"{loop_dir(loop, config)}/{cycle_id(number)}"


def counts_dir(loop: FeedbackLoop, config: OperatorConfig) -> str:
    """The output URI of count Jobs (required by the step contract; a count writes nothing)."""
    return f"{loop_dir(loop, config)}/counts"


def cursor_uri(loop: FeedbackLoop, number: int, config: OperatorConfig) -> str:
    """The cursor written by cycle N's collect step: every record seen then."""
    return f"{cycle_dir(loop, number, config)}/{CURSOR_FILE}"


# --- the loop's own Jobs ---------------------------------------------------------------------


def feedback_settings(spec: FeedbackLoopSpec) -> RunSettings:
    """Placement of the feedback Jobs: CPU only, the feedback's credentials, one retry."""
    credentials: Credentials | None = spec.feedback.credentials or spec.finetune.credentials
    resources = FEEDBACK_RESOURCES.model_copy(
        update={
            "node_selector": spec.finetune.resources.node_selector,
            "tolerations": spec.finetune.resources.tolerations,
            "priority_class_name": spec.finetune.resources.priority_class_name,
        }
    )
    return RunSettings(
        resources=resources,
        credentials=credentials,
        active_deadline_seconds=FEEDBACK_DEADLINE_SECONDS,
        retry=RetryPolicy(backoff_limit=2),
        image=None,
    )


def feedback_job(
    loop: FeedbackLoop,
    run_id: str,
    mode: str,
    since_cursor: str | None,
    record_schema: str,
    output_uri: str,
    config: OperatorConfig,
) -> list[dict[str, Any]]:
    """The ConfigMap and Job of a ``feedback`` step (count or collect)."""
    step = FeedbackStepSpec.model_validate(
        {
            "producer": runs.producer(loop, run_id),
            "output_uri": output_uri,
            "mode": mode,
            "source": loop.spec.feedback,
            "since_cursor_uri": since_cursor,
            "record_schema": record_schema,
            "preference": loop.spec.training is not None
            and loop.spec.training.preference is not None,
        }
    )
    request = JobRequest(
        loop, feedback_settings(loop.spec), "feedback", run_id, runs.spec_hash(loop), step
    )
    return build_children(request, config)


def collect_job(
    loop: FeedbackLoop,
    number: int,
    champion_cycle: int | None,
    record_schema: str,
    config: OperatorConfig,
) -> list[dict[str, Any]]:
    """Cycle N's collect Job: the records beyond the champion's cursor (all, for
    ``spec.champion``), written to :func:`cycle_dir`."""
    since = cursor_uri(loop, champion_cycle, config) if champion_cycle else None
    return feedback_job(
        loop,
        cycle_id(number),
        "collect",
        since,
        record_schema,
        cycle_dir(loop, number, config),
        config,
    )


def feedback_job_name(loop: FeedbackLoop, run_id: str) -> str:
    """The name of a feedback Job (as :func:`feedback_job` names it)."""
    return naming.job_name(loop.name, "feedback", run_id)


# --- the cycle's resources -------------------------------------------------------------------


def _metadata(loop: FeedbackLoop, name: str, extra: dict[str, str]) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "name": name,
        "namespace": loop.namespace,
        "labels": {
            "app.kubernetes.io/name": naming.PART_OF,
            "app.kubernetes.io/component": "feedback-cycle",
            "app.kubernetes.io/managed-by": naming.MANAGED_BY,
            "app.kubernetes.io/instance": naming.label_value(loop.name),
            LOOP_LABEL: naming.label_value(loop.name),
            **extra,
        },
        "annotations": {naming.ANNOTATION_RESOURCE: f"{loop.kind}/{loop.name}"},
    }
    owners = naming.owner_references(loop)
    if owners:
        meta["ownerReferences"] = owners
    return meta


def _body(kind: str, meta: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": API_VERSION, "kind": kind, "metadata": meta, "spec": spec}


def _template(template: Any, number: int) -> dict[str, Any]:
    """A template as spec fields; a fixed output URI gets a per-cycle sub-directory."""
    spec: dict[str, Any] = template.model_dump(mode="json", by_alias=True, exclude_none=True)
    spec["suspend"] = False
    uri = (spec.get("output") or {}).get("uri")
    if uri:
        spec["output"] = {"uri": f"{uri.rstrip('/')}/{cycle_id(number)}"}
    return spec


def _dataset_spec(base: Dataset, sources: list[dict[str, Any]]) -> dict[str, Any]:
    """The base Dataset's preparation (cleaning, safety, split...) over ``sources``."""
    spec: dict[str, Any] = base.spec.model_dump(mode="json", by_alias=True, exclude_none=True)
    spec["sources"] = sources
    spec["suspend"] = False
    spec.pop("output", None)  # the base's own output location is not the cycle's
    tokenizer = base.spec.tokenizer
    if tokenizer is not None and tokenizer.model is None:
        # A tokenizer trained on the data would differ from the champion's: keep none.
        spec.pop("tokenizer", None)
    return spec


def _base_sources(base: Dataset) -> list[dict[str, Any]]:
    return [s.model_dump(mode="json", by_alias=True, exclude_none=True) for s in base.spec.sources]


def cycle_dataset(
    loop: FeedbackLoop, base: Dataset, number: int, config: OperatorConfig
) -> dict[str, Any]:
    """The base Dataset's preparation applied to the base sources plus the new feedback."""
    feedback = {
        "uri": f"{cycle_dir(loop, number, config)}/{FEEDBACK_FILE}",
        "format": "jsonl",
        "weight": loop.spec.feedback.weight,
    }
    spec = _dataset_spec(base, [*_base_sources(base), feedback])
    name = cycle_name(loop, number)
    return _body("Dataset", _metadata(loop, name, {CYCLE_LABEL: str(number)}), spec)


def cycle_finetune(
    loop: FeedbackLoop, number: int, champion_training: str, *, last_stage: bool = True
) -> dict[str, Any]:
    """The challenger's (supervised) training: the template, from the champion, on the cycle's
    Dataset; published as the challenger when it is the last stage and nothing compresses it."""
    name = cycle_name(loop, number)
    spec = _template(loop.spec.finetune, number)
    spec["model"] = {"from": {"uri": champion_training}}
    spec["dataset"] = {"name": name}
    publish = challenger_publish(loop) if last_stage and loop.spec.compression is None else None
    if publish is not None:
        spec["publish"] = publish
    return _body("FinetuneJob", _metadata(loop, name, {CYCLE_LABEL: str(number)}), spec)


def _preference_labels(number: int) -> dict[str, str]:
    return {CYCLE_LABEL: str(number), LABEL_CYCLE_STAGE: PREFERENCE_STAGE}


def preference_dataset(
    loop: FeedbackLoop, base: Dataset, number: int, choice: PreferenceChoice, config: OperatorConfig
) -> dict[str, Any]:
    """The collected pairs (or unpaired records, for KTO) in schema ``preference``, cleaned as
    the base Dataset is; a base Dataset of schema ``preference`` adds its own records."""
    assert choice.data_file is not None
    own = _base_sources(base) if base.spec.record_schema == "preference" else []
    collected: dict[str, Any] = {
        "uri": f"{cycle_dir(loop, number, config)}/{choice.data_file}",
        "format": "jsonl",
    }
    if own:  # the feedback's weight is against the base Dataset's own pairs
        collected["weight"] = loop.spec.feedback.weight
    spec = _dataset_spec(base, [*own, collected])
    spec["schema"] = "preference"
    name = preference_name(loop, number)
    return _body("Dataset", _metadata(loop, name, _preference_labels(number)), spec)


def preference_finetune(
    loop: FeedbackLoop, number: int, choice: PreferenceChoice, champion_training: str
) -> dict[str, Any]:
    """The preference stage: the finetune template with ``objective: preference`` and the
    chosen algorithm, from the SFT FinetuneJob (after-sft) or the champion (instead-of-sft)."""
    wanted = loop.spec.training.preference if loop.spec.training is not None else None
    assert wanted is not None and choice.algorithm is not None
    spec = _template(loop.spec.finetune, number)
    if (spec.get("output") or {}).get("uri"):  # a fixed output: beside the SFT stage's
        spec["output"]["uri"] += "-pref"
    knobs = wanted.model_dump(
        mode="json",
        by_alias=True,
        exclude_none=True,
        exclude={"algorithm", "stage", "hyperparameters"},
    )
    spec["objective"] = "preference"
    spec["preference"] = {"algorithm": choice.algorithm, **knobs}
    if wanted.hyperparameters is not None:
        spec["hyperparameters"] = wanted.hyperparameters.model_dump(
            mode="json", by_alias=True, exclude_none=True
        )
    spec["hyperparameters"]["packing"] = False
    sft = {"kind": "FinetuneJob", "name": cycle_name(loop, number)}
    spec["model"] = {"from": sft if choice.trains_sft else {"uri": champion_training}}
    name = preference_name(loop, number)
    spec["dataset"] = {"name": name}
    publish = challenger_publish(loop) if loop.spec.compression is None else None
    if publish is not None:
        spec["publish"] = publish
    return _body("FinetuneJob", _metadata(loop, name, _preference_labels(number)), spec)


def trained_name(loop: FeedbackLoop, number: int, choice: PreferenceChoice | None) -> str:
    """The FinetuneJob whose model the cycle compresses or evaluates: the last stage's."""
    if choice is not None and choice.algorithm is not None:
        return preference_name(loop, number)
    return cycle_name(loop, number)


def cycle_compression(
    loop: FeedbackLoop, number: int, choice: PreferenceChoice | None = None
) -> dict[str, Any] | None:
    """The challenger's compression, when the loop has a compression template."""
    if loop.spec.compression is None:
        return None
    name = cycle_name(loop, number)
    spec = _template(loop.spec.compression, number)
    spec["model"] = {"kind": "FinetuneJob", "name": trained_name(loop, number, choice)}
    publish = challenger_publish(loop)
    if publish is not None:
        spec["publish"] = publish
    return _body("Compression", _metadata(loop, name, {CYCLE_LABEL: str(number)}), spec)


def challenger_publish(loop: FeedbackLoop) -> dict[str, Any] | None:
    """``spec.publish`` of a cycle's challenger: the promotion's MLflow/OCI/Hub targets with the
    alias ``challenger`` (KServe serves only the champion: plan/serving.py)."""
    publish = loop.spec.promotion.publish
    if publish is None:
        return None
    targets = {"mlflow", "oci", "huggingface"}
    body = publish.model_dump(mode="json", by_alias=True, exclude_none=True, include=targets)
    if not body:
        return None
    return {**body, "aliases": [CHALLENGER_ALIAS]}


def challenger_kind(loop: FeedbackLoop) -> str:
    """The kind whose output is the challenger: the Compression if any, else the FinetuneJob."""
    return "Compression" if loop.spec.compression is not None else "FinetuneJob"


def challenger_role(loop: FeedbackLoop, roles: set[str] | dict[str, Any]) -> str:
    """The role of a cycle's challenger among the roles it has: the Compression, else the
    preference FinetuneJob when there is one, else the FinetuneJob."""
    if loop.spec.compression is not None:
        return "Compression"
    return "PreferenceFinetuneJob" if "PreferenceFinetuneJob" in roles else "FinetuneJob"


def challenger_in(loop: FeedbackLoop, resources: list[AnyResource]) -> AnyResource | None:
    """The challenger among one cycle's resources."""
    by_role = {role_of(r): r for r in resources}
    return by_role.get(challenger_role(loop, by_role))


def cycle_evaluation(
    loop: FeedbackLoop, number: int, champion: str, choice: PreferenceChoice | None = None
) -> dict[str, Any]:
    """Challenger (candidate) against champion (baseline)."""
    name = cycle_name(loop, number)
    spec = _template(loop.spec.evaluation, number)
    challenger = name if loop.spec.compression is not None else trained_name(loop, number, choice)
    spec["candidate"] = {"kind": challenger_kind(loop), "name": challenger}
    spec["baseline"] = {"uri": champion}
    meta = _metadata(loop, name, {CYCLE_LABEL: str(number)})
    meta["annotations"][BASELINE_ANNOTATION] = champion
    return _body("Evaluation", meta, spec)


def cycle_resources(
    loop: FeedbackLoop,
    base: Dataset,
    number: int,
    champion: str,
    champion_training: str,
    config: OperatorConfig,
    choice: PreferenceChoice | None = None,
) -> list[dict[str, Any]]:
    """All resources of cycle N, in dependency order."""
    preference = choice is not None and choice.algorithm is not None
    found: list[dict[str, Any] | None] = []
    if choice is None or choice.trains_sft:
        found.append(cycle_dataset(loop, base, number, config))
        last = not preference
        found.append(cycle_finetune(loop, number, champion_training, last_stage=last))
    if preference:
        assert choice is not None
        found.append(preference_dataset(loop, base, number, choice, config))
        found.append(preference_finetune(loop, number, choice, champion_training))
    found.append(cycle_compression(loop, number, choice))
    found.append(cycle_evaluation(loop, number, champion, choice))
    return [body for body in found if body is not None]


def drift_evaluation(loop: FeedbackLoop, slot: int, champion: str) -> dict[str, Any]:
    """The champion alone on the loop's evaluation prompts, scoring the drift metric."""
    drift = loop.spec.triggers.drift
    assert drift is not None
    spec = _template(loop.spec.evaluation, 0)
    spec.pop("output", None)
    spec.pop("gates", None)  # gates compare to a baseline; drift only reads the score
    if not any(m.get("name") == drift.metric for m in spec["metrics"]):
        spec["metrics"] = [*spec["metrics"], {"name": drift.metric}]
    spec["candidate"] = {"uri": champion}
    name = drift_name(loop, slot)
    return _body("Evaluation", _metadata(loop, name, {DRIFT_LABEL: str(slot)}), spec)


def object_ref(api_version: str, kind: str, name: str, namespace: str) -> dict[str, Any]:
    """apiVersion, kind and metadata name/namespace: a deletion or the head of a patch."""
    return {
        "apiVersion": api_version,
        "kind": kind,
        "metadata": {"name": name, "namespace": namespace},
    }


def promotion_patch(loop: FeedbackLoop, champion: str) -> dict[str, Any] | None:
    """The merge patch that points the promotion target at the new champion."""
    promotion = loop.spec.promotion
    target = promotion.target
    if promotion.mode != "patch" or target is None:
        return None
    patch = object_ref(target.api_version, target.kind, target.name, loop.namespace)
    *parents, leaf = target.field_path.split(".")
    node = patch
    for part in parents:
        node = node.setdefault(part, {})
    node[leaf] = champion
    return patch
