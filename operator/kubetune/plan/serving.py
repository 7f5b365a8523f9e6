"""Serve models with KServe: render, observe and roll out ``InferenceService`` objects. Pure.

* :func:`render_service` builds the ``serving.kserve.io/v1beta1`` InferenceService of a model:
  a full model by ``predictor.model.storageUri``; a LoRA adapter on KServe's Hugging Face runtime
  with the vLLM backend, base model and adapters as ``predictor.storageUris`` under
  ``/mnt/models`` and the adapters as vLLM LoRA modules (``--enable-lora --lora-modules
  NAME=PATH``). Deterministic name, kubetune labels, the owner's controller reference, the hash
  of what was rendered (so a changed wish is patched, an unchanged one is left alone), and no
  secret: storage credentials come from the predictor's ServiceAccount.
* :func:`observe_service` reads what KServe reports (Ready, url, traffic split).
* :func:`plan_run_serving` serves a FinetuneJob's or Compression's finished model;
  :func:`plan_loop_serving` a FeedbackLoop's champion, with the canary rollout: the new champion
  gets ``canaryTrafficPercent`` first, then (after ``soakSeconds``, once Ready) all traffic, or,
  when the loop is annotated ``kubetune.dev/abort-rollout=cN``, the previous model again
  (``canaryTrafficPercent: 0`` pins the traffic to the last rolled-out revision, as KServe
  documents rollbacks) and the loop's champion reverts to it.

Every target's status (``status.publish[]`` entry ``kserve``) is recomputed from the observed
InferenceService on every pass.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from kubetune.api.common import RunRecord
from kubetune.api.contract import ANNOTATION_MODEL_URI as ANNOTATION_MODEL_URI
from kubetune.api.contract import ANNOTATION_SERVING_HASH as ANNOTATION_SERVING_HASH
from kubetune.api.publish import PublishTargetStatus
from kubetune.api.resources import AnyResource, Compression, FeedbackLoop, FinetuneJob
from kubetune.api.serving import (
    ABORT_ROLLOUT_ANNOTATION,
    INFERENCE_SERVICE,
    KSERVE_API_VERSION,
    KServeTarget,
    Rollout,
    TrafficSplit,
)
from kubetune.plan import naming
from kubetune.plan.status import CondSpec, conditions
from kubetune.plan.world import Event, ObservedWorld, OperatorConfig, Plan

MODELS_ROOT = "/mnt/models"
BASE_MOUNT = f"{MODELS_ROOT}/base"
ADAPTERS_MOUNT = f"{MODELS_ROOT}/adapters"
SERVABLE_SCHEMES = ("hf", "s3", "pvc")
CONDITION = "Serving"
MERGED_DIR = "merged"  # where a FinetuneJob with mergeAdapter writes the merged model
# Predictor and model fields the operator owns: unset in a patch when the wish leaves them out.
PREDICTOR_FIELDS = (
    "canaryTrafficPercent",
    "storageUris",
    "serviceAccountName",
    "minReplicas",
    "maxReplicas",
)
MODEL_FIELDS = ("storageUri", "args", "runtime", "resources")


class NotServable(ValueError):
    """The model cannot be served as asked (a local file, a missing base model...)."""


@dataclass(frozen=True)
class ServedModel:
    """What the predictor loads: a full model, or a LoRA adapter on ``base_uri``."""

    uri: str
    base_uri: str | None = None
    adapter_name: str | None = None
    extra_modules: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class ObservedService:
    """What KServe reports about an InferenceService."""

    name: str
    managed_by: str | None
    serving_hash: str | None
    model_uri: str | None
    ready: bool
    ready_reason: str | None
    ready_message: str | None
    url: str | None
    canary_percent: int | None
    traffic: tuple[TrafficSplit, ...] = ()


@dataclass
class ServingPlan:
    """What serving adds to a resource's plan."""

    children: list[dict[str, Any]] = field(default_factory=list)
    patches: list[dict[str, Any]] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    status: PublishTargetStatus | None = None
    condition: CondSpec | None = None
    requeue_after: float | None = None
    # Look again after the operator's dependency re-check (KServe may be installed later).
    recheck: bool = False


# --- what is served ---------------------------------------------------------------------------


def kserve_target(resource: AnyResource) -> KServeTarget | None:
    """The resource's KServe target: ``spec.publish.kserve`` (a FeedbackLoop:
    ``spec.promotion.publish.kserve``)."""
    if isinstance(resource, FinetuneJob | Compression):
        publish = resource.spec.publish
    elif isinstance(resource, FeedbackLoop):
        publish = resource.spec.promotion.publish
    else:
        return None
    return publish.kserve if publish is not None else None


def service_name(resource: AnyResource, target: KServeTarget) -> str:
    """The InferenceService's name: the target's, else the resource's (DNS-1035, <= 45)."""
    return target.name or naming.dns_label(resource.name, max_len=45)


def check_servable(uri: str) -> str:
    """A storage URI KServe can download (hf://, s3://, pvc://)."""
    scheme = uri.partition("://")[0]
    if scheme not in SERVABLE_SCHEMES:
        raise NotServable(
            f"{uri} cannot be served by KServe: its storage initializer reads "
            f"{', '.join(s + '://' for s in SERVABLE_SCHEMES)} (write the model to s3:// or pvc://)"
        )
    return uri


def served_model(resource: AnyResource, target: KServeTarget, uri: str) -> ServedModel:
    """What serving ``uri`` (the resource's model) means; raises :class:`NotServable`."""
    lora = target.lora
    base: str | None = lora.base_model_uri if lora is not None else None
    if isinstance(resource, FinetuneJob):
        spec = resource.spec
        trained_adapter = spec.method != "full"
        if trained_adapter and lora is None and spec.merge_adapter:
            return ServedModel(check_servable(f"{uri.rstrip('/')}/{MERGED_DIR}"))
        if spec.model.base is not None:
            base = base or spec.model.base.uri
        if not trained_adapter and lora is None:
            return ServedModel(check_servable(uri))
    elif lora is None:
        return ServedModel(check_servable(uri))
    if base is None:
        raise NotServable(
            f"{uri} is a LoRA adapter and its base model is unknown: set "
            "publish.kserve.lora.baseModelUri (or mergeAdapter to serve a merged model)"
        )
    name = (lora.adapter_name if lora is not None else None) or service_name(resource, target)
    modules = (lora.extra_modules if lora is not None else None) or []
    extra = tuple((m.name, check_servable(m.uri)) for m in modules)
    if any(n == name for n, _ in extra):
        raise NotServable(f"lora.extraModules repeats the adapter's own name {name}")
    return ServedModel(check_servable(uri), check_servable(base), name, extra)


# --- rendering --------------------------------------------------------------------------------


def _resources(target: KServeTarget) -> dict[str, Any] | None:
    wanted = target.resources
    if wanted is None:
        return None
    amounts: dict[str, Any] = {}
    if wanted.cpu:
        amounts["cpu"] = wanted.cpu
    if wanted.memory:
        amounts["memory"] = wanted.memory
    if wanted.gpus:
        amounts["nvidia.com/gpu"] = str(wanted.gpus)
    return {"requests": dict(amounts), "limits": dict(amounts)} if amounts else None


def _lora_parts(name: str, model: ServedModel) -> tuple[list[dict[str, str]], list[str]]:
    """storageUris and model server args of an adapter (and its extra modules) on its base."""
    assert model.base_uri is not None and model.adapter_name is not None
    modules = [(model.adapter_name, model.uri), *model.extra_modules]
    storage = [{"uri": model.base_uri, "mountPath": BASE_MOUNT}]
    storage += [{"uri": uri, "mountPath": f"{ADAPTERS_MOUNT}/{m}"} for m, uri in modules]
    args = [
        f"--model_name={name}-base",  # the base model's name; clients ask for the adapter's
        f"--model_dir={BASE_MOUNT}",
        "--backend=vllm",
        "--enable-lora",
        "--lora-modules",
        *(f"{m}={ADAPTERS_MOUNT}/{m}" for m, _ in modules),
    ]
    return storage, args


def _predictor(
    name: str, target: KServeTarget, model: ServedModel, canary_percent: int | None
) -> dict[str, Any]:
    spec: dict[str, Any] = {"modelFormat": {"name": target.model_format}}
    predictor: dict[str, Any] = {"model": spec}
    args: list[str] = []
    if model.base_uri is None:
        spec["storageUri"] = model.uri
    else:
        predictor["storageUris"], args = _lora_parts(name, model)
    args += list(target.args or [])
    if args:
        spec["args"] = args
    if target.runtime:
        spec["runtime"] = target.runtime
    resources = _resources(target)
    if resources:
        spec["resources"] = resources
    optional = {
        "serviceAccountName": target.service_account_name,
        "minReplicas": target.min_replicas,
        "maxReplicas": target.max_replicas,
        "canaryTrafficPercent": canary_percent,
    }
    predictor.update({k: v for k, v in optional.items() if v is not None})
    return predictor


def render_service(
    owner: AnyResource, target: KServeTarget, model: ServedModel, canary_percent: int | None
) -> dict[str, Any]:
    """The InferenceService serving ``model`` for ``owner`` (``canary_percent``: the share of
    the traffic the model gets while the previous revision keeps the rest)."""
    name = service_name(owner, target)
    predictor = _predictor(name, target, model, canary_percent)
    digest = naming.short_hash(json.dumps(predictor, sort_keys=True), 16)
    meta: dict[str, Any] = {
        "name": name,
        "namespace": owner.namespace,
        "labels": {
            "app.kubernetes.io/name": naming.PART_OF,
            "app.kubernetes.io/component": "serving",
            "app.kubernetes.io/managed-by": naming.MANAGED_BY,
            "app.kubernetes.io/instance": naming.label_value(owner.name),
            naming.LABEL_KIND: owner.kind,
            naming.LABEL_NAME: naming.label_value(owner.name),
        },
        "annotations": {
            naming.ANNOTATION_RESOURCE: f"{owner.kind}/{owner.name}",
            ANNOTATION_SERVING_HASH: digest,
            ANNOTATION_MODEL_URI: model.uri,
        },
    }
    owners = naming.owner_references(owner)
    if owners:
        meta["ownerReferences"] = owners
    return {
        "apiVersion": KSERVE_API_VERSION,
        "kind": INFERENCE_SERVICE,
        "metadata": meta,
        "spec": {"predictor": predictor},
    }


def update_patch(desired: dict[str, Any]) -> dict[str, Any]:
    """A merge patch turning an InferenceService into ``desired``: the operator's predictor
    fields it leaves out are removed (null), everything else of the object is kept."""
    predictor = dict(desired["spec"]["predictor"])
    model = dict(predictor["model"])
    model.update({k: None for k in MODEL_FIELDS if k not in model})
    predictor.update({k: None for k in PREDICTOR_FIELDS if k not in predictor})
    predictor["model"] = model
    meta = desired["metadata"]
    return {
        "apiVersion": desired["apiVersion"],
        "kind": desired["kind"],
        "metadata": {
            "name": meta["name"],
            "namespace": meta["namespace"],
            "labels": meta["labels"],
            "annotations": meta["annotations"],
        },
        "spec": {"predictor": predictor},
    }


# --- observing --------------------------------------------------------------------------------


def _traffic(status: dict[str, Any]) -> tuple[TrafficSplit, ...]:
    predictor = (status.get("components") or {}).get("predictor") or {}
    return tuple(
        TrafficSplit(
            revision=entry.get("revisionName"),
            percent=int(entry.get("percent") or 0),
            tag=entry.get("tag"),
            latest=entry.get("latestRevision"),
        )
        for entry in predictor.get("traffic") or []
    )


def observe_service(body: dict[str, Any]) -> ObservedService:
    """The facts of an InferenceService that status and rollout need."""
    meta = body.get("metadata") or {}
    annotations = meta.get("annotations") or {}
    status = body.get("status") or {}
    predictor = (body.get("spec") or {}).get("predictor") or {}
    ready: dict[str, Any] = next(
        (c for c in status.get("conditions") or [] if c.get("type") == "Ready"), {}
    )
    canary = predictor.get("canaryTrafficPercent")
    seen, generation = status.get("observedGeneration"), meta.get("generation")
    stale = seen is not None and generation is not None and seen != generation
    if stale:  # KServe has not reconciled the latest spec: its Ready is about an older one
        ready = {"reason": "Reconciling", "message": f"KServe has not seen generation {generation}"}
    return ObservedService(
        name=str(meta.get("name", "")),
        managed_by=annotations.get(naming.ANNOTATION_RESOURCE),
        serving_hash=annotations.get(ANNOTATION_SERVING_HASH),
        model_uri=annotations.get(ANNOTATION_MODEL_URI),
        ready=ready.get("status") == "True",
        ready_reason=ready.get("reason"),
        ready_message=ready.get("message"),
        url=status.get("url"),
        canary_percent=int(canary) if isinstance(canary, int | float) else None,
        traffic=_traffic(status),
    )


# --- converging -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Wish:
    """The model the InferenceService should serve, and the canary share it gets."""

    model: ServedModel
    canary_percent: int | None = None


def _status(name: str, observed: ObservedService | None, **fields: Any) -> PublishTargetStatus:
    if observed is not None:
        fields.setdefault("url", observed.url)
        fields.setdefault("traffic", list(observed.traffic) or None)
        fields.setdefault("version", observed.model_uri)
    return PublishTargetStatus(target="kserve", reference=name, **fields)


def _refused(name: str, observed: ObservedService | None, reason: str, message: str) -> ServingPlan:
    return ServingPlan(
        status=_status(name, observed, phase="Failed", message=message),
        condition=CondSpec(CONDITION, "False", reason, message),
    )


def not_installed_message(world: ObservedWorld) -> str:
    """Why nothing can be served: no KServe in the cluster, or the local runtime."""
    if world.serving is None:
        return "this runtime does not serve models on KServe (run the operator in a cluster)"
    return (
        "KServe is not installed: the API server serves no serving.kserve.io/v1beta1 "
        "InferenceService (install KServe, then the InferenceService is created)"
    )


def converge(
    owner: AnyResource, target: KServeTarget, world: ObservedWorld, wish: Wish | NotServable | None
) -> ServingPlan:
    """Create or patch the owner's InferenceService towards ``wish`` (None: no model yet) and
    report where it stands."""
    name = service_name(owner, target)
    if world.serving is None:  # the local runtime: not an error of the resource
        message = not_installed_message(world)
        return ServingPlan(
            status=_status(name, None, phase="Pending", message=message),
            condition=CondSpec(CONDITION, "False", "NotInCluster", message),
        )
    if not world.serving.installed:
        refused = _refused(name, None, "KServeNotInstalled", not_installed_message(world))
        refused.recheck = True
        return refused
    body = world.serving.inference_services.get(name)
    observed = observe_service(body) if body is not None else None
    owner_ref = f"{owner.kind}/{owner.name}"
    if observed is not None and observed.managed_by != owner_ref:
        message = f"InferenceService {name} already exists and is not managed by {owner_ref}"
        return _refused(name, observed, "ServiceConflict", message)
    if isinstance(wish, NotServable):
        return _refused(name, observed, "NotServable", str(wish))
    if wish is None:
        message = "waiting for the model" + (f"; serving {observed.model_uri}" if observed else "")
        return ServingPlan(
            status=_status(name, observed, phase="Pending", message=message),
            condition=CondSpec(CONDITION, "False", "ModelNotReady", message),
        )
    desired = render_service(owner, target, wish.model, wish.canary_percent)
    wanted_hash = desired["metadata"]["annotations"][ANNOTATION_SERVING_HASH]
    plan = ServingPlan()
    if observed is None:
        plan.children.append(desired)
        message = f"creating InferenceService {name} for {wish.model.uri}"
    elif observed.serving_hash != wanted_hash:
        plan.patches.append(update_patch(desired))
        message = f"updating InferenceService {name} to {wish.model.uri}"
    elif observed.ready:
        message = f"InferenceService {name} serves {wish.model.uri} at {observed.url}"
        plan.status = _status(name, observed, phase="Published", message=message)
        plan.condition = CondSpec(CONDITION, "True", "ServiceReady", message)
        return plan
    else:
        why = observed.ready_message or observed.ready_reason or "not Ready yet"
        message = f"InferenceService {name} is not Ready: {why}"
    plan.status = _status(
        name, observed, phase="Publishing", message=message, version=wish.model.uri
    )
    plan.condition = CondSpec(CONDITION, "False", "ServiceNotReady", message)
    return plan


def transition_events(previous: PublishTargetStatus | None, plan: ServingPlan) -> list[Event]:
    """One event when the target's phase or condition reason changes."""
    new, condition = plan.status, plan.condition
    if new is None or condition is None:
        return []
    if previous is not None and (previous.phase, previous.message) == (new.phase, new.message):
        return []
    if previous is not None and new.phase == previous.phase and new.phase != "Published":
        return []
    if new.phase == "Failed":
        return [Event("Warning", condition.reason, new.message or new.phase)]
    return [Event("Normal", condition.reason, new.message or new.phase)]


def previous_entry(resource: AnyResource) -> PublishTargetStatus | None:
    """The kserve entry of the resource's stored ``status.publish``."""
    status = resource.status
    entries = getattr(status, "publish", None) if status is not None else None
    return next((e for e in entries or [] if e.target == "kserve"), None)


def plan_run_serving(
    resource: FinetuneJob | Compression,
    target: KServeTarget,
    world: ObservedWorld,
    phase: str | None,
    output_uri: str | None,
) -> ServingPlan:
    """Serve a FinetuneJob's or Compression's model once its run has succeeded."""
    wish: Wish | NotServable | None = None
    if phase == "Succeeded" and output_uri:
        try:
            wish = Wish(served_model(resource, target, output_uri))
        except NotServable as exc:
            wish = exc
    plan = converge(resource, target, world, wish)
    plan.events = transition_events(previous_entry(resource), plan)
    return plan


# --- a FeedbackLoop's champion: canary, soak, rollout or rollback -------------------------------


@dataclass(frozen=True)
class Served:
    """A champion as the loop knows it: its URI, its training model and its cycle."""

    uri: str | None
    training_uri: str | None
    cycle: int | None


@dataclass
class LoopServing(ServingPlan):
    """Serving of a loop's champion: the rollout to record, and the champion to return to
    when a canary was aborted."""

    rollout: Rollout | None = None
    revert: Served | None = None


def _started(
    loop: FeedbackLoop,
    target: KServeTarget,
    previous: Rollout | None,
    promoted: Served,
    before: Served,
    can_canary: bool,
    now: datetime,
) -> tuple[Rollout, list[Event]]:
    """The rollout of a champion promoted in this pass (a canary when configured)."""
    assert promoted.uri is not None and promoted.cycle is not None
    # During a canary the last fully rolled-out model stays the one traffic returns to.
    back = (
        Served(previous.previous_uri, previous.previous_training_uri, previous.previous_cycle)
        if previous is not None and previous.phase == "Canary"
        else before
    )
    common: dict[str, Any] = {
        "cycle": promoted.cycle,
        "model_uri": promoted.uri,
        "previous_uri": back.uri,
        "previous_training_uri": back.training_uri,
        "previous_cycle": back.cycle,
        "start_time": now,
    }
    canary = target.canary
    if canary is None or not can_canary:
        message = "all traffic switched at once" if canary is None else "no earlier revision"
        return Rollout(phase="RolledOut", completion_time=now, message=message, **common), []
    due = now + timedelta(seconds=canary.soak_seconds)
    message = f"canary: {canary.traffic_percent}% of the traffic until {due.isoformat()}"
    run = f"c{promoted.cycle}"
    event = Event(
        "Normal",
        "CanaryStarted",
        f"cycle {run}: {promoted.uri} gets {canary.traffic_percent}% of the traffic of "
        f"InferenceService {service_name(loop, target)} for {canary.soak_seconds}s; abort with "
        f"`kubectl annotate feedbackloop {loop.name} {ABORT_ROLLOUT_ANNOTATION}={run}`",
    )
    return Rollout(phase="Canary", message=message, **common), [event]


def _soaked(
    loop: FeedbackLoop,
    target: KServeTarget,
    rollout: Rollout,
    observed: ObservedService | None,
    now: datetime,
) -> tuple[Rollout, list[Event], Served | None, float | None]:
    """A running canary: aborted, rolled out, or still soaking (with when to look again)."""
    run = f"c{rollout.cycle}"
    if loop.metadata.annotations.get(ABORT_ROLLOUT_ANNOTATION) == run and rollout.previous_uri:
        message = (
            f"aborted by {ABORT_ROLLOUT_ANNOTATION}={run}: traffic returned to "
            f"{rollout.previous_uri}"
        )
        done = rollout.model_copy(
            update={"phase": "RolledBack", "completion_time": now, "message": message}
        )
        back = Served(rollout.previous_uri, rollout.previous_training_uri, rollout.previous_cycle)
        return done, [Event("Warning", "RolloutAborted", f"cycle {run}: {message}")], back, None
    soak = target.canary.soak_seconds if target.canary is not None else 0
    due = (rollout.start_time or now) + timedelta(seconds=soak)
    if now < due:
        return rollout, [], None, (due - now).total_seconds()
    if observed is None or not observed.ready or observed.model_uri != rollout.model_uri:
        return rollout, [], None, None  # the InferenceService's events wake the loop
    message = f"rolled out after a {soak}s canary"
    done = rollout.model_copy(
        update={"phase": "RolledOut", "completion_time": now, "message": message}
    )
    event = Event("Normal", "RolledOut", f"cycle {run}: {rollout.model_uri} takes all traffic")
    return done, [event], None, None


def _loop_wish(
    loop: FeedbackLoop, target: KServeTarget, rollout: Rollout | None, champion: Served
) -> Wish | NotServable | None:
    """The model and canary share the loop's InferenceService should have."""
    uri, percent = champion.uri, None
    if rollout is not None and rollout.phase == "Canary" and target.canary is not None:
        uri, percent = rollout.model_uri, target.canary.traffic_percent
    elif rollout is not None and rollout.phase == "RolledBack" and uri == rollout.previous_uri:
        percent = 0  # pin every request to the last rolled-out revision
    if uri is None:
        return None
    try:
        return Wish(served_model(loop, target, uri), percent)
    except NotServable as exc:
        return exc


def plan_loop_serving(
    loop: FeedbackLoop,
    target: KServeTarget,
    world: ObservedWorld,
    champion: Served,
    promoted: Served | None,
    before: Served,
) -> LoopServing:
    """Serve the loop's champion; a promotion in this pass (``promoted``, replacing ``before``)
    starts a canary when the target has one."""
    previous = loop.status.rollout if loop.status is not None else None
    installed = world.serving is not None and world.serving.installed
    name = service_name(loop, target)
    body = world.serving.inference_services.get(name) if world.serving is not None else None
    observed = observe_service(body) if body is not None else None
    rollout, revert, wait = previous, None, None
    events: list[Event] = []
    if promoted is not None and installed:
        rollout, events = _started(
            loop, target, previous, promoted, before, observed is not None, world.now
        )
    elif previous is not None and previous.phase == "Canary" and installed:
        rollout, events, revert, wait = _soaked(loop, target, previous, observed, world.now)
    current = revert or champion
    converged = converge(loop, target, world, _loop_wish(loop, target, rollout, current))
    if rollout is not None and rollout.phase != "RolledOut" and converged.status is not None:
        detail = f"cycle c{rollout.cycle}: {rollout.message}"
        converged.status.message = f"{converged.status.message}; {detail}"
    result = LoopServing(
        children=converged.children,
        patches=converged.patches,
        status=converged.status,
        condition=converged.condition,
        requeue_after=wait,
        recheck=converged.recheck,
        rollout=rollout,
        revert=revert,
    )
    result.events = [*events, *transition_events(previous_entry(loop), result)]
    return result


def serve_loop(
    loop: FeedbackLoop,
    world: ObservedWorld,
    champion: Served,
    promoted: Served | None,
    before: Served,
) -> LoopServing | None:
    """The loop's serving plan, when its promotion publishes to KServe (else None)."""
    target = kserve_target(loop)
    if target is None:
        return None
    return plan_loop_serving(loop, target, world, champion, promoted, before)


def rolled_back(history: list[RunRecord], serving: LoopServing) -> list[RunRecord]:
    """The history with the aborted cycle's record marked ``RolledBack``."""
    rollout = serving.rollout
    if serving.revert is None or rollout is None:
        return history
    run = f"c{rollout.cycle}"
    return [
        r.model_copy(
            update={
                "reason": "RolledBack",
                "message": f"{r.message}; {rollout.message}" if r.message else rollout.message,
            }
        )
        if r.run_id == run
        else r
        for r in history
    ]


# --- into the resource's plan -----------------------------------------------------------------


def merge_into(
    plan: Plan,
    resource: AnyResource,
    serving: ServingPlan,
    config: OperatorConfig,
    now: datetime,
) -> None:
    """Add serving's children, patches, events, ``status.publish`` entry, ``Serving``
    condition and wake-up to the resource's plan."""
    plan.children += serving.children
    plan.patches += serving.patches
    plan.events += serving.events
    if serving.status is not None:
        entry = serving.status.model_dump(mode="json", by_alias=True, exclude_none=True)
        others = [e for e in plan.status.get("publish") or [] if e.get("target") != "kserve"]
        plan.status["publish"] = [*others, entry]
    if serving.condition is not None:
        prior = resource.status.conditions if resource.status is not None else []
        [found] = conditions(prior, [serving.condition], resource.generation, now)
        kept = [c for c in plan.status.get("conditions") or [] if c.get("type") != CONDITION]
        wire = found.model_dump(mode="json", by_alias=True, exclude_none=True)
        plan.status["conditions"] = [*kept, wire]
    wait = serving.requeue_after
    if serving.recheck:
        wait = config.dependency_recheck_seconds
    if wait is not None:
        wait = max(wait, 0.5)
        plan.requeue_after = min(plan.requeue_after, wait) if plan.requeue_after else wait


def add_run_serving(
    resource: AnyResource, world: ObservedWorld, config: OperatorConfig, plan: Plan
) -> Plan:
    """A FinetuneJob's or Compression's plan, plus the serving of its model on KServe."""
    if not isinstance(resource, FinetuneJob | Compression):
        return plan
    target = kserve_target(resource)
    if target is None:
        return plan
    status = plan.status
    serving = plan_run_serving(
        resource, target, world, status.get("phase"), status.get("outputUri")
    )
    merge_into(plan, resource, serving, config, world.now)
    return plan
