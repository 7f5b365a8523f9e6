"""``spec.publish``: hand a finished model to a model registry, an OCI registry or the Hub.

Each target is a small typed block; every one is optional, and each set one is published by a
``publish`` step that runs once the run's artifact is complete. Credentials are Secret
references only: the operator hands them to the step's pod as ``secretKeyRef`` env (never as
values) and no status, event, log line or published metadata ever carries them.

The status of each target is in ``status.publish[]`` (:class:`PublishTargetStatus`).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, StringConstraints

from kubetune.api.base import KubeModel
from kubetune.api.common import SecretRef
from kubetune.api.serving import KServeTarget, TrafficSplit

# Env names the publish step reads its credentials from (set from the Secrets; locally, taken
# from the caller's environment when a variable of the same name is set).
MLFLOW_USERNAME_ENV = "MLFLOW_TRACKING_USERNAME"
MLFLOW_PASSWORD_ENV = "MLFLOW_TRACKING_PASSWORD"
MLFLOW_TOKEN_ENV = "MLFLOW_TRACKING_TOKEN"
OCI_USERNAME_ENV = "KUBETUNE_OCI_USERNAME"
OCI_PASSWORD_ENV = "KUBETUNE_OCI_PASSWORD"
HF_PUBLISH_TOKEN_ENV = "KUBETUNE_HF_PUBLISH_TOKEN"

# An OCI tag (distribution spec): [A-Za-z0-9_][A-Za-z0-9._-]{0,127}.
OCI_TAG_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$"
OciTag = Annotated[str, StringConstraints(pattern=OCI_TAG_PATTERN)]
# An MLflow alias: letters, digits, '-' and '_' (MLflow refuses 'latest' and v<N>).
Alias = Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_-]{0,63}$")]
# An MLflow tracking server's URL (run tracking, publish target); credentials never go in it.
TrackingUri = Annotated[
    str,
    Field(
        description="The MLflow tracking server, e.g. https://mlflow.example.com (credentials "
        "go in credentials, never in the URI).",
        pattern=r"^https?://[^\s/@]+(/\S*)?$",
        max_length=2048,
    ),
]
PublishTargetName = Literal["mlflow", "oci", "huggingface", "kserve"]
PublishPhase = Literal["Pending", "Publishing", "Published", "Failed"]


class MlflowCredentials(KubeModel):
    """Basic auth (username and password) or a bearer token, each from a Secret."""

    username: SecretRef | None = Field(None, description=f"env {MLFLOW_USERNAME_ENV}.")
    password: SecretRef | None = Field(None, description=f"env {MLFLOW_PASSWORD_ENV}.")
    token: SecretRef | None = Field(None, description=f"Bearer token (env {MLFLOW_TOKEN_ENV}).")

    __cel_rules__ = (
        {
            "rule": "has(self.username) == has(self.password)",
            "message": "set both username and password, or neither",
        },
    )


class MlflowTarget(KubeModel):
    """Register each published model as a version of an MLflow registered model."""

    tracking_uri: TrackingUri
    model_name: str = Field(
        description="Registered model name (created when missing).", min_length=1, max_length=256
    )
    credentials: MlflowCredentials | None = Field(None, description="Secrets of the server.")
    tags: dict[str, str] | None = Field(
        None, description="Extra tags on each model version (besides kubetune's lineage tags)."
    )


class OciCredentials(KubeModel):
    """Registry credentials from Secrets (basic auth, or a token as the password)."""

    username: SecretRef = Field(description=f"env {OCI_USERNAME_ENV}.")
    password: SecretRef = Field(description=f"Password or token (env {OCI_PASSWORD_ENV}).")


class OciTarget(KubeModel):
    """Push the model as a CNCF ModelPack OCI artifact (weights, config, tokenizer, docs)."""

    reference: str = Field(
        description="Repository without tag, e.g. registry.example.com/team/support-model.",
        pattern=r"^[a-z0-9.-]+(:[0-9]+)?(/[a-z0-9]+([._-][a-z0-9]+)*)+$",
        max_length=512,
    )
    tag: OciTag | None = Field(
        None,
        description="Tag of each push (default: the version, <resource>-<run id>). "
        "The manifest is always addressable by its digest too.",
    )
    credentials: OciCredentials | None = Field(None, description="Registry credentials.")
    insecure: bool = Field(
        False, description="Plain HTTP (a local test registry). Never for a real registry."
    )


class HuggingFaceTarget(KubeModel):
    """Upload the model folder with a generated model card to a Hugging Face Hub repository."""

    repo: str = Field(
        description="hf://ORG/NAME (a model repository; created when missing).",
        pattern=r"^hf://[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$",
        max_length=256,
    )
    token: SecretRef = Field(description=f"A write token (env {HF_PUBLISH_TOKEN_ENV}).")
    private: bool = Field(True, description="Create the repository private.")
    endpoint: str | None = Field(
        None,
        description="Hub endpoint (default https://huggingface.co; an Enterprise Hub or mirror).",
        pattern=r"^https?://\S+$",
    )


class PublishSpec(KubeModel):
    """Where a finished model goes. Each target is optional; the set ones are all published."""

    mlflow: MlflowTarget | None = Field(None, description="MLflow Model Registry.")
    oci: OciTarget | None = Field(None, description="OCI registry (CNCF ModelPack artifact).")
    huggingface: HuggingFaceTarget | None = Field(None, description="Hugging Face Hub.")
    # Not a publish-step target: the operator creates the InferenceService itself
    # (plan/serving.py) and adds the status.publish[] entry with target kserve.
    kserve: KServeTarget | None = Field(
        None, description="A KServe InferenceService serving the model (created by the operator)."
    )
    aliases: list[Alias] | None = Field(
        None,
        max_length=8,
        description="Aliases moved to each published version: MLflow aliases and extra OCI "
        "tags (a FeedbackLoop sets 'challenger' on its cycles' models).",
    )


class PublishTargetStatus(KubeModel):
    """Where one target stands."""

    target: PublishTargetName = Field(description="mlflow, oci, huggingface or kserve.")
    phase: PublishPhase = Field(description="Pending, Publishing, Published or Failed.")
    reference: str | None = Field(
        None, description="Model name, repository or Hub repo published to."
    )
    version: str | None = Field(None, description="MLflow model version, OCI tag, Hub commit.")
    digest: str | None = Field(None, description="OCI manifest digest (sha256:...).")
    url: str | None = Field(None, description="Where to see it.")
    aliases: list[str] | None = Field(None, description="Aliases pointing at this version.")
    message: str | None = Field(None, description="What happened (an error's cause).")
    traffic: list[TrafficSplit] | None = Field(
        None,
        description="kserve: the predictor's traffic split, as the InferenceService reports it.",
    )
