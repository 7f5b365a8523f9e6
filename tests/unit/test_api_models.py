"""The typed API: defaults, camelCase wire names, round trips, and every CEL rule both ways."""

from __future__ import annotations

import inspect
from datetime import UTC, datetime

import kubetune.api.common
import kubetune.api.compression
import kubetune.api.dataset
import kubetune.api.evaluation
import kubetune.api.feedback
import kubetune.api.finetune
import kubetune.api.scheduling
import pytest
from kubetune.api import (
    Compression,
    Dataset,
    DatasetSpec,
    Evaluation,
    FeedbackLoopStatus,
    FinetuneJob,
    FinetuneJobSpec,
)
from kubetune.api.base import KubeModel
from kubetune.api.common import ArtifactRef, Condition
from pydantic import BaseModel, ValidationError

from tests.helpers.cel_cases import CEL_CASES, URI_INVALID, URI_RULE_MESSAGE, URI_VALID, CelCase

API_MODULES = (
    kubetune.api.common,
    kubetune.api.dataset,
    kubetune.api.finetune,
    kubetune.api.compression,
    kubetune.api.evaluation,
    kubetune.api.feedback,
    kubetune.api.scheduling,
)
MINIMAL_FT = {
    "model": {"base": {"uri": "hf://org/model"}},
    "dataset": {"name": "corpus"},
    "method": "full",
}


def _api_models() -> list[type[KubeModel]]:
    found = {}
    for module in API_MODULES:
        for _, obj in inspect.getmembers(module, inspect.isclass):
            if issubclass(obj, KubeModel) and obj is not KubeModel:
                found[obj.__qualname__] = obj
    return list(found.values())


def test_finetune_defaults_are_written_down() -> None:
    spec = FinetuneJobSpec.model_validate(MINIMAL_FT)
    assert spec.objective == "instruction"
    assert spec.hyperparameters.epochs == 1
    assert spec.hyperparameters.learning_rate == 2e-4
    assert spec.hyperparameters.scheduler == "cosine"
    assert spec.checkpointing.resume == "auto"
    assert spec.resources.gpus == 0 and spec.resources.nodes == 1
    assert spec.retry.backoff_limit == 2
    assert spec.model.trust_remote_code is False and spec.model.allow_pickle is False


def test_dataset_defaults_clean_and_redact() -> None:
    spec = DatasetSpec.model_validate({"sources": [{"uri": "file:///data/a.jsonl"}]})
    assert spec.record_schema == "text"
    assert spec.cleaning.exact_dedup and spec.cleaning.near_dedup.threshold == 0.8
    assert "email" in spec.safety.pii.kinds
    assert spec.split.validation_fraction == 0.1 and spec.split.seed == 42


def test_wire_names_are_camel_case_and_keywords_aliased() -> None:
    spec = FinetuneJobSpec.model_validate(
        {**MINIMAL_FT, "model": {"from": {"kind": "FinetuneJob", "name": "earlier"}}}
    )
    wire = spec.wire()
    assert wire["model"]["from"] == {"kind": "FinetuneJob", "name": "earlier"}
    assert "learningRate" in wire["hyperparameters"]
    assert "learning_rate" not in wire["hyperparameters"]
    data = DatasetSpec.model_validate({"sources": [{"uri": "s3://b/x"}], "schema": "chat"})
    assert data.wire()["schema"] == "chat"


@pytest.mark.parametrize(
    "resource",
    [
        Dataset(
            metadata={"name": "d"},  # type: ignore[arg-type]
            spec=DatasetSpec.model_validate({"sources": [{"uri": "pvc://claim/raw"}]}),
        ),
        FinetuneJob(
            metadata={"name": "f", "namespace": "ml"},  # type: ignore[arg-type]
            spec=FinetuneJobSpec.model_validate(MINIMAL_FT),
        ),
    ],
    ids=["Dataset", "FinetuneJob"],
)
def test_resources_round_trip_through_their_wire_form(resource: BaseModel) -> None:
    body = resource.model_dump(mode="json", by_alias=True, exclude_none=True)
    again = type(resource).model_validate(body)
    assert again == resource
    assert body["apiVersion"] == "kubetune.dev/v1alpha1"


def test_status_round_trip_keeps_conditions_and_history() -> None:
    when = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
    status = FeedbackLoopStatus(
        phase="Ready",
        conditions=[
            Condition(type="Ready", status="True", reason="Promoted", last_transition_time=when)
        ],
        champion="s3://models/v3",
        generation=3,
        history=[{"runId": "c3", "phase": "Succeeded", "results": {"tokenF1": 0.7}}],  # type: ignore[list-item]
    )
    wire = status.wire()
    assert wire["conditions"][0]["lastTransitionTime"].startswith("2025-01-02T03:04:05")
    assert FeedbackLoopStatus.model_validate(wire) == status


def test_unknown_fields_are_rejected() -> None:
    with pytest.raises(ValidationError, match="learningRte"):
        FinetuneJobSpec.model_validate({**MINIMAL_FT, "hyperparameters": {"learningRte": 1}})


@pytest.mark.parametrize("case", CEL_CASES, ids=lambda c: c.id)
def test_cel_rule_accepts_valid_and_rejects_invalid(case: CelCase) -> None:
    case.model.model_validate(case.valid)
    with pytest.raises(ValidationError) as info:
        case.model.model_validate(case.invalid)
    assert case.message in str(info.value)


def test_every_cel_rule_has_a_case() -> None:
    covered = {case.message for case in CEL_CASES}
    missing = []
    for model in _api_models():
        for rule in model.__cel_rules__:
            if not any(rule["message"].startswith(m) for m in covered):
                missing.append(f"{model.__name__}: {rule['message']}")
    assert not missing, f"CEL rules without a test case: {missing}"


@pytest.mark.parametrize(
    ("uri", "ok"),
    [
        (URI_VALID, True),
        ("file:///models/v1", True),
        (URI_INVALID, False),
        ("file:///models/..", False),
        ("ftp://host/file", False),
        ("models/v1", False),
    ],
)
def test_artifact_uris_need_a_known_scheme_and_no_parent_segment(uri: str, ok: bool) -> None:
    if ok:
        assert ArtifactRef(uri=uri).uri == uri
    else:
        with pytest.raises(ValidationError):
            ArtifactRef(uri=uri)
    assert URI_RULE_MESSAGE  # the same rule is checked on the CRD side in test_crds


def test_kinds_parse_whole_objects() -> None:
    comp = Compression.model_validate(
        {
            "apiVersion": "kubetune.dev/v1alpha1",
            "kind": "Compression",
            "metadata": {"name": "c"},
            "spec": {"model": {"uri": "s3://m/v1"}, "steps": [{"quantize": {"bits": 4}}]},
        }
    )
    assert comp.spec.steps[0].quantize is not None
    assert comp.spec.steps[0].quantize.quant_type == "nf4"
    with pytest.raises(ValidationError):
        Evaluation.model_validate({"kind": "Evaluation", "metadata": {"name": "e"}, "spec": {}})
