"""Typed API of the five kinds (group kubetune.dev, version v1alpha1), their registry
(:mod:`kubetune.api.kinds`) and the pod contract (:mod:`kubetune.api.contract`,
:mod:`kubetune.api.steps`)."""

from kubetune.api.common import (
    API_VERSION,
    GROUP,
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
from kubetune.api.kinds import KIND_INFO, KINDS, KindInfo, kind_info
from kubetune.api.resources import (
    AnyResource,
    Compression,
    Dataset,
    Evaluation,
    FeedbackLoop,
    FinetuneJob,
    Resource,
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
