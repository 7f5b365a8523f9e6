"""The contract between the operator and the pods.

The operator resolves every reference and writes one **step spec** per run (a JSON file in a
ConfigMap mounted in the pod, or a file in the local workdir). The pod runs
``python -m kubetune_workloads <step> --spec FILE``, writes its artifact with an
:class:`ArtifactManifest` (written last), its full results next to it, and a short
:class:`StepResult` JSON to the container's termination message (< 4 KiB).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter
from pydantic.alias_generators import to_camel

from kubetune.api.compression import CompressionSpec
from kubetune.api.dataset import DatasetSpec, RecordSchema
from kubetune.api.evaluation import EvaluationSpec, PromptCase
from kubetune.api.feedback import FeedbackSource
from kubetune.api.finetune import FinetuneJobSpec, Progress

StepName = Literal["dataprep", "finetune", "compress", "evaluate", "feedback"]
STEP_OF_KIND: dict[str, StepName] = {
    "Dataset": "dataprep",
    "FinetuneJob": "finetune",
    "Compression": "compress",
    "Evaluation": "evaluate",
}
TERMINATION_MESSAGE_LIMIT = 4096
MANIFEST_FILE = "kubetune-manifest.json"
RESULTS_FILE = "results.json"


class _Contract(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")

    def to_json(self) -> str:
        return self.model_dump_json(by_alias=True, exclude_none=True, indent=2)


class Producer(_Contract):
    """The resource (and run) a step runs for."""

    kind: str
    name: str
    namespace: str
    uid: str | None = None
    generation: int = 1
    run_id: str


class InputArtifact(_Contract):
    """A resolved input: its URI and, when it is a kubetune artifact, its content hash."""

    uri: str
    content_hash: str | None = None


class _StepBase(_Contract):
    producer: Producer
    output_uri: str = Field(description="Directory the step writes its artifact to.")
    progress_port: int | None = Field(
        None, description="Port for the live progress server (Prometheus text and JSON)."
    )


class DataprepStepSpec(_StepBase):
    """Prepare a dataset. Source URIs are the user's, already validated."""

    step: Literal["dataprep"] = "dataprep"
    spec: DatasetSpec
    tokenizer_uri: str | None = Field(None, description="Resolved tokenizer model URI.")


class FinetuneStepSpec(_StepBase):
    """Train a model."""

    step: Literal["finetune"] = "finetune"
    spec: FinetuneJobSpec
    dataset: InputArtifact
    model: InputArtifact | None = Field(
        None, description="Resolved base/from model; None when designing from scratch."
    )
    checkpoint_uri: str | None = Field(
        None, description="Where checkpoints go (default: OUTPUT/checkpoints)."
    )


class CompressStepSpec(_StepBase):
    """Compress a model."""

    step: Literal["compress"] = "compress"
    spec: CompressionSpec
    model: InputArtifact
    dataset: InputArtifact | None = None


class EvaluateStepSpec(_StepBase):
    """Evaluate a candidate (and baseline) model."""

    step: Literal["evaluate"] = "evaluate"
    spec: EvaluationSpec
    candidate: InputArtifact
    baseline: InputArtifact | None = None
    prompt_dataset: InputArtifact | None = Field(
        None, description="Dataset artifact whose validation split gives prompt cases."
    )
    perplexity_dataset: InputArtifact | None = None
    extra_cases: list[PromptCase] | None = Field(
        None, description="Cases read by the operator from a ConfigMap."
    )
    judge_api_key_env: str | None = Field(
        None, description="Env var holding the judge API key (set from the Secret)."
    )


class FeedbackStepSpec(_StepBase):
    """Count or collect the feedback records that lie beyond a cursor.

    ``count`` writes nothing and reports ``pendingRecords``. ``collect`` writes
    ``feedback.jsonl`` (usable records in the base dataset's schema) and ``cursor.json``
    (every record seen up to now, per file) under ``output_uri``, manifest last.
    """

    step: Literal["feedback"] = "feedback"
    mode: Literal["count", "collect"]
    source: FeedbackSource
    since_cursor_uri: str | None = Field(
        None, description="cursor.json of records already used; None: every record is new."
    )
    record_schema: RecordSchema = Field(
        "instruction", description="Schema of the records written (the base dataset's)."
    )


FEEDBACK_FILE = "feedback.jsonl"
CURSOR_FILE = "cursor.json"

StepSpec = Annotated[
    DataprepStepSpec | FinetuneStepSpec | CompressStepSpec | EvaluateStepSpec | FeedbackStepSpec,
    Field(discriminator="step"),
]
_STEP_ADAPTER: TypeAdapter[StepSpec] = TypeAdapter(StepSpec)


def parse_step_spec(data: str | bytes | dict[str, Any]) -> StepSpec:
    """Parse a step spec from JSON text or a dict."""
    if isinstance(data, dict):
        return _STEP_ADAPTER.validate_python(data)
    return _STEP_ADAPTER.validate_json(data)


class StepResult(_Contract):
    """The summary a pod reports in its termination message (< 4 KiB)."""

    step: StepName
    ok: bool
    reason: str = Field(description="CamelCase reason, e.g. Completed, NaNLoss, InvalidInput.")
    message: str = ""
    output_uri: str | None = None
    content_hash: str | None = None
    metrics: dict[str, float] = Field(default_factory=dict)
    passed: bool | None = Field(None, description="Evaluation: whether every gate passed.")
    failed_gates: list[str] | None = None
    report_uri: str | None = None
    details: dict[str, Any] | None = Field(
        None, description="Small kind-specific extras (Dataset: version, records, stageCounts)."
    )

    def termination_message(self) -> str:
        """JSON that fits the 4 KiB termination message, trimming details then message."""
        text = self.model_dump_json(by_alias=True, exclude_none=True)
        if len(text.encode()) <= TERMINATION_MESSAGE_LIMIT:
            return text
        slim = self.model_copy(update={"details": None})
        text = slim.model_dump_json(by_alias=True, exclude_none=True)
        if len(text.encode()) <= TERMINATION_MESSAGE_LIMIT:
            return text
        slim = slim.model_copy(update={"message": slim.message[:512], "metrics": {}})
        return slim.model_dump_json(by_alias=True, exclude_none=True)[:TERMINATION_MESSAGE_LIMIT]


def parse_step_result(text: str) -> StepResult | None:
    """Parse a termination message; None when it is not a kubetune result."""
    try:
        data = json.loads(text)
        return StepResult.model_validate(data)
    except (ValueError, TypeError):
        return None


class LiveProgress(Progress):
    """The JSON progress view served by a running pod (FinetuneJob progress + phase text)."""

    phase: str | None = None
    message: str | None = None


class ArtifactManifest(_Contract):
    """Written last into every artifact directory: what it is and where it came from."""

    artifact: Literal["dataset", "model", "compressed-model", "evaluation", "feedback"]
    content_hash: str = Field(description="sha256 over the artifact's files (sorted paths).")
    files: dict[str, str] = Field(description="Relative path -> sha256 of each file.")
    producer: Producer
    spec_hash: str = Field(description="sha256 of the canonical step spec (minus outputs).")
    inputs: list[InputArtifact] = Field(default_factory=list)
    kubetune_version: str
    seed: int | None = None
    created_at: datetime
    extra: dict[str, Any] | None = None
