"""Typed API of the five kinds (group kubetune.dev, version v1alpha1) and the pod contract."""

from kubetune.api.common import (
    API_VERSION,
    GROUP,
    KINDS,
    VERSION,
    ArtifactRef,
    Condition,
    DatasetRef,
)
from kubetune.api.compression import CompressionSpec, CompressionStatus
from kubetune.api.dataset import DatasetSpec, DatasetStatus
from kubetune.api.evaluation import EvaluationSpec, EvaluationStatus
from kubetune.api.feedback import FeedbackLoopSpec, FeedbackLoopStatus
from kubetune.api.finetune import FinetuneJobSpec, FinetuneJobStatus
from kubetune.api.resources import (
    KIND_INFO,
    AnyResource,
    Compression,
    Dataset,
    Evaluation,
    FeedbackLoop,
    FinetuneJob,
    KindInfo,
    Resource,
    kind_info,
)

__all__ = [
    "API_VERSION",
    "GROUP",
    "KINDS",
    "KIND_INFO",
    "VERSION",
    "AnyResource",
    "ArtifactRef",
    "Compression",
    "CompressionSpec",
    "CompressionStatus",
    "Condition",
    "Dataset",
    "DatasetRef",
    "DatasetSpec",
    "DatasetStatus",
    "Evaluation",
    "EvaluationSpec",
    "EvaluationStatus",
    "FeedbackLoop",
    "FeedbackLoopSpec",
    "FeedbackLoopStatus",
    "FinetuneJob",
    "FinetuneJobSpec",
    "FinetuneJobStatus",
    "KindInfo",
    "Resource",
    "kind_info",
]
