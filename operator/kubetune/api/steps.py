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

from kubetune.api.common import Progress
from kubetune.api.compression import CompressionSpec
from kubetune.api.dataset import DatasetSpec, RecordSchema
from kubetune.api.evaluation import EvaluationSpec, PromptCase
from kubetune.api.feedback import FeedbackSource
from kubetune.api.finetune import FinetuneJobSpec, MlflowRun
from kubetune.api.publish import PublishSpec

StepName = Literal["dataprep", "finetune", "compress", "evaluate", "feedback", "publish"]
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
    role: str | None = Field(
        None, description="What the input is for: dataset, model, candidate, prompts, judge..."
    )
    version: str | None = Field(None, description="A Dataset artifact's version (v...).")


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
    preference_dataset: InputArtifact | None = Field(
        None, description="Dataset artifact whose validation split gives held-out pairs."
    )
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
    preference: bool = Field(
        False,
        description="Also write the preference records (pairs, rated answers) for a "
        "FeedbackLoop's preference stage, and count them as usable.",
    )


FEEDBACK_FILE = "feedback.jsonl"
CURSOR_FILE = "cursor.json"
PREFERENCE_PAIRS_FILE = "preference-pairs.jsonl"  # prompt, chosen, rejected
PREFERENCE_UNPAIRED_FILE = "preference-unpaired.jsonl"  # prompt, completion, label (KTO)


class PublishLineage(_Contract):
    """Where a published model came from: recorded as MLflow tags, OCI annotations and in the
    model card (never a secret)."""

    resource: str = Field(description="Kind/namespace/name of the producing resource.")
    run_id: str
    base_model: str | None = Field(None, description="Base (or from) model URI.")
    dataset: str | None = Field(None, description="Training dataset artifact URI.")
    dataset_version: str | None = None
    source_model: str | None = Field(None, description="Compression: the model compressed.")
    metrics: dict[str, float] = Field(default_factory=dict, description="Scores known now.")


class PromoteRequest(_Contract):
    """Mode promote: move an alias to versions published earlier (a FeedbackLoop champion)."""

    alias: str = "champion"
    mlflow_version: str | None = None
    oci_digest: str | None = None
    clear_aliases: list[str] = Field(
        default_factory=lambda: ["challenger"],
        description="Aliases removed when they point at the promoted version.",
    )
    tags: dict[str, str] = Field(
        default_factory=dict, description="Tags added to the promoted MLflow version."
    )


class PublishStepSpec(_StepBase):
    """Publish a complete model artifact to each ``spec.publish`` target, or (mode promote) move
    an alias to versions already published. Reads ``artifact``; writes nothing under
    ``output_uri`` (the artifact it publishes)."""

    step: Literal["publish"] = "publish"
    mode: Literal["publish", "promote"] = "publish"
    publish: PublishSpec
    artifact: InputArtifact
    version: str = Field(description="The version name: <resource>-<run id>.")
    lineage: PublishLineage
    promote: PromoteRequest | None = None


StepSpec = Annotated[
    DataprepStepSpec
    | FinetuneStepSpec
    | CompressStepSpec
    | EvaluateStepSpec
    | FeedbackStepSpec
    | PublishStepSpec,
    Field(discriminator="step"),
]
_STEP_ADAPTER: TypeAdapter[StepSpec] = TypeAdapter(StepSpec)


def parse_step_spec(data: str | bytes | dict[str, Any]) -> StepSpec:
    """Parse a step spec from JSON text or a dict."""
    if isinstance(data, dict):
        return _STEP_ADAPTER.validate_python(data)
    return _STEP_ADAPTER.validate_json(data)


# --- failure reasons --------------------------------------------------------------------

FailureKind = Literal["permanent", "retryable"]
# Exit code of a step that failed for a permanent reason: the Job's podFailurePolicy fails the
# Job at once (FailJob) instead of spending its backoffLimit on retries that cannot help.
EXIT_PERMANENT = 2
EXIT_RETRYABLE = 1

# Every reason a workload reports in its StepResult when it fails, decided on purpose:
# permanent (the same inputs fail the same way: fix the spec or the data) or retryable (the
# next pod may succeed: storage, memory, interruptions, bugs). The workloads exit with
# EXIT_PERMANENT or EXIT_RETRYABLE from this table, the planners build the Job's
# podFailurePolicy from it, and docs/operator.md lists it. tests/workloads check that every
# reason a workload raises is here.
FAILURE_REASONS: dict[str, tuple[FailureKind, str]] = {
    # the step contract
    "InvalidSpec": ("permanent", "the step spec does not parse (operator/workload mismatch)"),
    "SpecUnreadable": ("permanent", "the step spec file cannot be read"),
    "InvalidInput": ("permanent", "inputs are wrong: missing fields, a bad source, a bad case"),
    # dataprep
    "EmptyDataset": ("permanent", "the sources hold no records, or none survive preparation"),
    "TooManyMalformedRecords": ("permanent", "more malformed records than maxErrorRatio"),
    # finetune
    "UnsafeWeights": ("permanent", "pickle weights without allowPickle"),
    "UnsupportedArchitecture": ("permanent", "the model's architecture cannot be loaded"),
    "NaNLoss": ("permanent", "the training loss became NaN or infinite"),
    "Diverged": ("permanent", "the loss diverged and no rollback could recover it"),
    "TrackingUnavailable": ("retryable", "tracking.mlflow.required and MLflow did not answer"),
    # compress
    "UnsupportedMerge": ("permanent", "the adapter cannot be merged into this base"),
    "NoAdapter": ("permanent", "mergeAdapter on a model without an adapter"),
    "AlreadyQuantized": ("permanent", "quantize on an already quantized model"),
    "AdapterNotMerged": ("permanent", "quantize/prune an adapter before mergeAdapter"),
    "PruneQuantized": ("permanent", "prune after quantize"),
    "QuantizationFailed": ("permanent", "bitsandbytes cannot quantize this model"),
    "QualityGateFailed": ("permanent", "the compressed model is worse than maxPerplexityIncrease"),
    "NothingToQuantize": ("permanent", "quantize on a model with no layer bitsandbytes quantizes"),
    # evaluate
    "PromptTooLong": ("permanent", "a prompt does not fit the model's context"),
    "JudgeUnauthorized": ("permanent", "the judge endpoint refused the API key (401/403)"),
    # feedback
    "InvalidCursor": ("permanent", "the since-cursor is not a kubetune cursor"),
    "CursorUnreadable": ("retryable", "the since-cursor cannot be read (storage)"),
    # publish
    "PublishUnauthorized": ("permanent", "a registry refused the credentials (401/403)"),
    "PublishRejected": ("permanent", "a registry refused the request (4xx): a bad name or tag"),
    "RegistryUnreachable": ("retryable", "a registry did not answer (connection, 5xx)"),
    "NotPublished": ("permanent", "mode promote on a version that was never published"),
    # anything
    "StorageError": ("retryable", "reading or writing an artifact failed"),
    "OutOfMemory": ("retryable", "the process ran out of memory (MemoryError)"),
    "Interrupted": ("retryable", "SIGINT: the step was interrupted"),
    "Preempted": ("retryable", "SIGTERM: the pod was stopped (preemption, drain)"),
    "OutputLocked": ("retryable", "another live process is writing the same output"),
    "InternalError": ("retryable", "an unexpected exception (a bug, or a transient failure)"),
    "Failed": ("retryable", "a parallel dataprep map task did not complete"),
}
PERMANENT_REASONS = frozenset(r for r, (kind, _) in FAILURE_REASONS.items() if kind == "permanent")


def is_permanent(reason: str) -> bool:
    """Whether a failure reason is permanent (unknown reasons are retryable)."""
    return reason in PERMANENT_REASONS


def exit_code_for(reason: str) -> int:
    """The exit code of a failed step: EXIT_PERMANENT for a permanent reason, else 1."""
    return EXIT_PERMANENT if is_permanent(reason) else EXIT_RETRYABLE


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
    tensorboard_uri: str | None = Field(None, description="Finetune: TensorBoard event files.")
    mlflow_run: MlflowRun | None = Field(None, description="Finetune: the MLflow run logged to.")
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
