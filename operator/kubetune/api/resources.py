"""The five custom resources as whole objects (apiVersion, kind, metadata, spec, status).

Their names, plurals and printer columns are registered in :mod:`kubetune.api.kinds`.
"""

from __future__ import annotations

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
