"""The five custom resources as whole objects (apiVersion, kind, metadata, spec, status).

Also the per-kind registry (plural, short names, printer columns) that the CRD generator, the
validator, the planners and the CLI share.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from kubetune.api.common import DNS_SUBDOMAIN, CommonStatus
from kubetune.api.compression import CompressionSpec, CompressionStatus
from kubetune.api.dataset import DatasetSpec, DatasetStatus
from kubetune.api.evaluation import EvaluationSpec, EvaluationStatus
from kubetune.api.feedback import FeedbackLoopSpec, FeedbackLoopStatus
from kubetune.api.finetune import FinetuneJobSpec, FinetuneJobStatus


class ObjectMeta(BaseModel):
    """The parts of metav1.ObjectMeta kubetune reads; other fields are kept as they are."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    name: str = Field(pattern=DNS_SUBDOMAIN, max_length=253)
    namespace: str = "default"
    uid: str | None = None
    generation: int | None = None
    resource_version: str | None = Field(None, alias="resourceVersion")
    creation_timestamp: datetime | None = Field(None, alias="creationTimestamp")
    deletion_timestamp: datetime | None = Field(None, alias="deletionTimestamp")
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)


SpecT = TypeVar("SpecT", bound=BaseModel)
StatusT = TypeVar("StatusT", bound=CommonStatus)


class Resource(BaseModel, Generic[SpecT, StatusT]):
    """A kubetune custom resource."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    api_version: Literal["kubetune.dev/v1alpha1"] = Field(
        "kubetune.dev/v1alpha1", alias="apiVersion"
    )
    kind: str
    metadata: ObjectMeta
    spec: SpecT
    status: StatusT | None = None

    @property
    def name(self) -> str:
        return self.metadata.name

    @property
    def namespace(self) -> str:
        return self.metadata.namespace

    @property
    def generation(self) -> int:
        return self.metadata.generation or 1

    def body(self) -> dict[str, Any]:
        """The object as YAML/JSON (camelCase, unset fields omitted)."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class Dataset(Resource[DatasetSpec, DatasetStatus]):
    """Curated, cleaned, versioned training data."""

    kind: Literal["Dataset"] = "Dataset"


class FinetuneJob(Resource[FinetuneJobSpec, FinetuneJobStatus]):
    """A training run: transfer learning, domain adaptation or task SFT."""

    kind: Literal["FinetuneJob"] = "FinetuneJob"


class Compression(Resource[CompressionSpec, CompressionStatus]):
    """Merge, quantize and prune a model, with a before/after report."""

    kind: Literal["Compression"] = "Compression"


class Evaluation(Resource[EvaluationSpec, EvaluationStatus]):
    """Validate a model against prompt sets, a baseline and gates."""

    kind: Literal["Evaluation"] = "Evaluation"


class FeedbackLoop(Resource[FeedbackLoopSpec, FeedbackLoopStatus]):
    """Continuous improvement from accumulated feedback."""

    kind: Literal["FeedbackLoop"] = "FeedbackLoop"


AnyResource = Dataset | FinetuneJob | Compression | Evaluation | FeedbackLoop


@dataclass(frozen=True)
class PrinterColumn:
    """An additionalPrinterColumns entry."""

    name: str
    json_path: str
    type: str = "string"
    description: str = ""
    priority: int = 0


@dataclass(frozen=True)
class KindInfo:
    """Everything the CRD and the CLI need to know about one kind."""

    kind: str
    plural: str
    singular: str
    short_names: tuple[str, ...]
    model: type[Resource[Any, Any]]
    spec_model: type[BaseModel]
    status_model: type[CommonStatus]
    done_condition: str
    description: str
    columns: tuple[PrinterColumn, ...]


_PHASE = PrinterColumn("Phase", ".status.phase", description="Summary of the conditions.")
_AGE = PrinterColumn("Age", ".metadata.creationTimestamp", type="date")
_GPU_SECONDS = PrinterColumn(
    "GPU-Seconds",
    ".status.usage.gpuSeconds",
    type="number",
    priority=1,
    description="GPU-seconds of the current run.",
)

KIND_INFO: dict[str, KindInfo] = {
    "Dataset": KindInfo(
        "Dataset",
        "datasets",
        "dataset",
        ("ktds", "ktdataset"),
        Dataset,
        DatasetSpec,
        DatasetStatus,
        "Ready",
        "Dataset prepares versioned training data: curation, cleaning, de-duplication, PII "
        "redaction, offensive-content filtering, balance, tokenization and split.",
        (
            _PHASE,
            PrinterColumn("Schema", ".spec.schema"),
            PrinterColumn("Records", ".status.records", type="integer"),
            PrinterColumn("Tokens", ".status.tokens", type="integer", priority=1),
            PrinterColumn("Version", ".status.version", priority=1),
            _GPU_SECONDS,
            _AGE,
        ),
    ),
    "FinetuneJob": KindInfo(
        "FinetuneJob",
        "finetunejobs",
        "finetunejob",
        ("ftj", "ft"),
        FinetuneJob,
        FinetuneJobSpec,
        FinetuneJobStatus,
        "Succeeded",
        "FinetuneJob trains a model: from a pretrained base, an earlier job's output, or an "
        "architecture designed from scratch; full, LoRA or QLoRA.",
        (
            _PHASE,
            PrinterColumn("Method", ".spec.method"),
            PrinterColumn("Objective", ".spec.objective", priority=1),
            PrinterColumn("Step", ".status.progress.step", type="integer"),
            PrinterColumn("Loss", ".status.progress.loss", type="number"),
            _GPU_SECONDS,
            _AGE,
        ),
    ),
    "Compression": KindInfo(
        "Compression",
        "compressions",
        "compression",
        ("ktc", "kcomp"),
        Compression,
        CompressionSpec,
        CompressionStatus,
        "Succeeded",
        "Compression merges adapters, quantizes with bitsandbytes and prunes a model, and "
        "reports size, speed and quality before and after.",
        (
            _PHASE,
            PrinterColumn("Size-Ratio", ".status.sizeRatio", type="number"),
            PrinterColumn("PPL-Delta", ".status.perplexityDelta", type="number"),
            _GPU_SECONDS,
            _AGE,
        ),
    ),
    "Evaluation": KindInfo(
        "Evaluation",
        "evaluations",
        "evaluation",
        ("kteval", "keval"),
        Evaluation,
        EvaluationSpec,
        EvaluationStatus,
        "Succeeded",
        "Evaluation scores a candidate model (and optionally a baseline) on prompt sets, "
        "compares them, applies gates and runs bias probes.",
        (
            _PHASE,
            PrinterColumn("Passed", ".status.passed", type="boolean"),
            PrinterColumn("Message", ".status.message", priority=1),
            _GPU_SECONDS,
            _AGE,
        ),
    ),
    "FeedbackLoop": KindInfo(
        "FeedbackLoop",
        "feedbackloops",
        "feedbackloop",
        ("ktfl", "kfl"),
        FeedbackLoop,
        FeedbackLoopSpec,
        FeedbackLoopStatus,
        "Ready",
        "FeedbackLoop accumulates feedback, retrains, evaluates the challenger against the "
        "champion and promotes it when the gates pass.",
        (
            _PHASE,
            PrinterColumn("Generation", ".status.generation", type="integer"),
            PrinterColumn("Pending", ".status.pendingRecords", type="integer"),
            PrinterColumn("Champion", ".status.champion", priority=1),
            _AGE,
        ),
    ),
}


def kind_info(kind: str) -> KindInfo:
    """The registry entry of a kind, or a clear error."""
    try:
        return KIND_INFO[kind]
    except KeyError:
        raise ValueError(f"unknown kind {kind!r}; expected one of {sorted(KIND_INFO)}") from None
