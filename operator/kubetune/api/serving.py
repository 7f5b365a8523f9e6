"""``spec.publish.kserve``: serve a finished model with a KServe ``InferenceService``.

Unlike the other publish targets this one needs no pod: the operator itself creates (or patches)
a ``serving.kserve.io/v1beta1`` InferenceService in the resource's namespace, controlled by the
resource (owner reference), and reads its status back into ``status.publish[]``.

* A full model is served by ``storageUri`` (KServe downloads it to ``/mnt/models``).
* A LoRA adapter is served on KServe's Hugging Face runtime with the vLLM backend: the base model
  and each adapter are separate ``storageUris`` under ``/mnt/models`` and the adapters are
  vLLM LoRA modules (``--enable-lora --lora-modules NAME=PATH``).
* On a FeedbackLoop promotion the new champion first gets ``canaryTrafficPercent`` of the
  traffic; after ``soakSeconds`` (and once the InferenceService is Ready) the canary percent is
  removed and the new model takes all traffic, unless the loop carries the annotation
  ``kubetune.dev/abort-rollout=cN``: then traffic returns to the previous model.

No secret is ever part of the InferenceService: storage credentials come from the
ServiceAccount named in ``serviceAccountName`` (KServe's documented way).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import Field, StringConstraints

from kubetune.api.base import KubeModel
from kubetune.api.common import ArtifactURI, Quantity, ResourceName
from kubetune.api.contract import ANNOTATION_ABORT_ROLLOUT

KSERVE_GROUP = "serving.kserve.io"
KSERVE_API_VERSION = f"{KSERVE_GROUP}/v1beta1"
INFERENCE_SERVICE = "InferenceService"
ABORT_ROLLOUT_ANNOTATION = ANNOTATION_ABORT_ROLLOUT

# An InferenceService name: a DNS-1035 label, short enough for the names KServe derives from it
# (``NAME-predictor-00001-deployment-...``).
ServiceName = Annotated[
    str, StringConstraints(pattern=r"^[a-z]([-a-z0-9]*[a-z0-9])?$", max_length=45)
]
# A LoRA module name (the ``model`` field of an OpenAI-style request).
ModuleName = Annotated[
    str, StringConstraints(pattern=r"^[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?$", max_length=63)
]


class ServingResources(KubeModel):
    """Requests and limits of the predictor container (requests = limits)."""

    cpu: Quantity | None = Field(None, description="CPU, e.g. '4'.")
    memory: Quantity | None = Field(None, description="Memory, e.g. '24Gi'.")
    gpus: int = Field(0, ge=0, le=16, description="GPUs (nvidia.com/gpu).")


class LoraModule(KubeModel):
    """One more LoRA adapter served on the same base model."""

    name: ModuleName = Field(description="Module name clients request (the 'model' field).")
    uri: ArtifactURI = Field(description="The adapter directory (hf://, s3://, pvc://).")


class KServeLora(KubeModel):
    """Serve the model as a LoRA adapter on its base model (vLLM backend)."""

    base_model_uri: ArtifactURI | None = Field(
        None,
        description="The base model (hf://, s3://, pvc://). Default: a FinetuneJob's "
        "spec.model.base.uri.",
    )
    adapter_name: ModuleName | None = Field(
        None, description="LoRA module name of the published adapter (default: the service name)."
    )
    extra_modules: list[LoraModule] | None = Field(
        None, max_length=8, description="Other adapters served beside it on the same base."
    )

    __cel_rules__ = (
        {
            "rule": "!has(self.extraModules) || self.extraModules.all(m, "
            "self.extraModules.exists_one(o, o.name == m.name))",
            "message": "extra module names must be unique",
            "fieldPath": ".extraModules",
        },
    )


class KServeCanary(KubeModel):
    """FeedbackLoop promotion: the new champion takes a share of the traffic first."""

    traffic_percent: int = Field(
        10, ge=1, le=99, description="canaryTrafficPercent of the new model during the soak."
    )
    soak_seconds: int = Field(
        600,
        ge=0,
        le=7 * 24 * 3600,
        description="Seconds from the canary's start to the full rollout (which also waits "
        "for the InferenceService to be Ready), unless the loop is annotated "
        "kubetune.dev/abort-rollout=cN.",
    )


class KServeTarget(KubeModel):
    """An InferenceService (serving.kserve.io/v1beta1) serving the model, in this namespace."""

    name: ServiceName | None = Field(
        None, description="InferenceService name (default: the resource's name)."
    )
    model_format: str = Field(
        "huggingface",
        description="predictor.model.modelFormat.name (huggingface for KServe's HF/vLLM runtime).",
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$",
    )
    runtime: ResourceName | None = Field(
        None,
        description="A ServingRuntime or ClusterServingRuntime name (default: KServe's "
        "choice for the model format).",
    )
    args: list[Annotated[str, StringConstraints(max_length=1024)]] | None = Field(
        None,
        max_length=32,
        description="Extra model server arguments, e.g. --max-model-len=4096 (never secrets).",
    )
    resources: ServingResources | None = Field(None, description="Predictor resources.")
    service_account_name: ResourceName | None = Field(
        None,
        description="ServiceAccount of the predictor; KServe reads storage credentials "
        "(S3, HF token) from the Secrets it names.",
    )
    min_replicas: int | None = Field(None, ge=0, le=1000, description="predictor.minReplicas.")
    max_replicas: int | None = Field(None, ge=1, le=1000, description="predictor.maxReplicas.")
    lora: KServeLora | None = Field(
        None,
        description="Serve the model as a LoRA adapter on vLLM. Unset: a FinetuneJob's adapter "
        "(lora/qlora without mergeAdapter) is served as one with the defaults; with "
        "mergeAdapter the merged model is served.",
    )
    canary: KServeCanary | None = Field(
        None,
        description="FeedbackLoop promotion only: canary, soak, then full rollout. Unset: a "
        "promotion switches all traffic at once.",
    )

    __cel_rules__ = (
        {
            "rule": "!has(self.minReplicas) || !has(self.maxReplicas) "
            "|| self.minReplicas <= self.maxReplicas",
            "message": "minReplicas must not exceed maxReplicas",
            "fieldPath": ".minReplicas",
        },
    )


class TrafficSplit(KubeModel):
    """One entry of the predictor's traffic, as KServe reports it."""

    revision: str | None = Field(None, description="Knative revision name.")
    percent: int = Field(0, description="Share of the traffic.")
    tag: str | None = Field(None, description="Tag (prev, latest).")
    latest: bool | None = Field(None, description="Whether it is the latest revision.")


RolloutPhase = Literal["Canary", "RolledOut", "RolledBack"]


class Rollout(KubeModel):
    """A FeedbackLoop's rollout of its champion to its InferenceService."""

    phase: RolloutPhase = Field(description="Canary, RolledOut or RolledBack.")
    cycle: int = Field(description="The cycle whose challenger is rolled out.")
    model_uri: str = Field(description="The model rolled out.")
    previous_uri: str | None = Field(None, description="The model served before it.")
    previous_training_uri: str | None = Field(
        None, description="The training model of the previous champion (restored on abort)."
    )
    previous_cycle: int | None = Field(
        None, description="The previous champion's cycle (unset: spec.champion)."
    )
    start_time: datetime | None = Field(None, description="When the canary started.")
    completion_time: datetime | None = Field(
        None, description="When the rollout completed or was aborted."
    )
    message: str | None = Field(None, description="What happened.")
