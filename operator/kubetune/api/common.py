"""Types shared by the five kinds: references, URIs, secrets, resources, run settings, status."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Literal

from pydantic import Field, StringConstraints, field_validator

from kubetune.api.base import CelRule, KubeModel
from kubetune.api.kube import DNSSubdomain, LabelMap, LabelValue
from kubetune.api.scheduling import Affinity, Toleration

GROUP = "kubetune.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

ModelProducerKind = Literal["FinetuneJob", "Compression"]

# --- URIs ---------------------------------------------------------------------------------

ARTIFACT_SCHEMES = ("hf", "s3", "pvc", "file")
SOURCE_SCHEMES = (*ARTIFACT_SCHEMES, "http", "https")
_PARENT_SEGMENT = r"(^|/)\.\.(/|$)"
# CEL string literals reject unknown escapes like "\.", so the rule spells the dot as [.].
_NO_PARENT_RULE = "!self.matches('(^|/)[.][.](/|$)')"


def _uri_pattern(schemes: tuple[str, ...]) -> str:
    return rf"^({'|'.join(schemes)})://\S+$"


def check_uri(value: str, schemes: tuple[str, ...]) -> str:
    """Validate a URI's scheme and refuse ``..`` path segments (path traversal)."""
    scheme, sep, rest = value.partition("://")
    if not sep or not rest:
        raise ValueError(
            f"{value!r} is not a URI; expected SCHEME://PATH with SCHEME in {list(schemes)}"
        )
    if scheme not in schemes:
        raise ValueError(f"unsupported URI scheme {scheme!r}; expected one of {list(schemes)}")
    if re.search(_PARENT_SEGMENT, rest):
        raise ValueError(f"{value!r} contains a '..' path segment")
    if any(c.isspace() for c in value):
        raise ValueError(f"{value!r} contains whitespace")
    if scheme == "pvc":
        claim = rest.split("/", 1)[0]
        if len(claim) > 253 or not re.match(DNS_SUBDOMAIN, claim):
            raise ValueError(
                f"{value!r}: the claim {claim!r} is not a PersistentVolumeClaim name (a lowercase "
                "RFC 1123 subdomain); the pod mounting it would never start"
            )
    return value


ArtifactURI = Annotated[
    str,
    Field(
        pattern=_uri_pattern(ARTIFACT_SCHEMES),
        max_length=2048,
        json_schema_extra={
            "x-kubernetes-validations": [
                {"rule": _NO_PARENT_RULE, "message": "must not contain a '..' path segment"}
            ]
        },
    ),
]
SourceURI = Annotated[
    str,
    Field(
        pattern=_uri_pattern(SOURCE_SCHEMES),
        max_length=2048,
        json_schema_extra={
            "x-kubernetes-validations": [
                {"rule": _NO_PARENT_RULE, "message": "must not contain a '..' path segment"}
            ]
        },
    ),
]

DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
ResourceName = Annotated[str, StringConstraints(pattern=DNS_SUBDOMAIN, max_length=253)]
Quantity = Annotated[
    str,
    StringConstraints(
        pattern=r"^\+?([0-9]+(\.[0-9]*)?|\.[0-9]+)"
        r"((Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E)|[eE][+-]?[0-9]+)?$",
        max_length=64,
    ),
]


# --- references ---------------------------------------------------------------------------

# Every reference stays in its resource's namespace: `namespace` exists only to be refused.
SAME_NAMESPACE_RULE: CelRule = {
    "rule": "!has(self.namespace)",
    "message": "cross-namespace references are not allowed; "
    "the referenced resource must be in the same namespace",
    "fieldPath": ".namespace",
}


class ArtifactRef(KubeModel):
    """A model or artifact: either a URI, or another kubetune resource in the same namespace."""

    uri: ArtifactURI | None = Field(
        None,
        description="Artifact location: hf://ORG/NAME[@REVISION], s3://BUCKET/PREFIX, "
        "pvc://CLAIM/PATH or file:///PATH.",
    )
    kind: ModelProducerKind | None = Field(
        None, description="Kind of the kubetune resource whose output is referenced."
    )
    name: ResourceName | None = Field(
        None, description="Name of the referenced resource, in the same namespace."
    )
    namespace: str | None = Field(
        None,
        description="Not supported: references must stay in the resource's own namespace. "
        "Present only so that a cross-namespace reference is rejected with a clear message.",
    )

    __cel_rules__ = (
        {
            "rule": "has(self.uri) != (has(self.kind) || has(self.name))",
            "message": "set either uri, or kind and name",
        },
        {
            "rule": "has(self.kind) == has(self.name)",
            "message": "kind and name must be set together",
        },
        SAME_NAMESPACE_RULE,
    )

    @field_validator("uri")
    @classmethod
    def _uri(cls, v: str | None) -> str | None:
        return None if v is None else check_uri(v, ARTIFACT_SCHEMES)


class DatasetRef(KubeModel):
    """A dataset: a `Dataset` resource in the same namespace, or a prepared dataset artifact."""

    name: ResourceName | None = Field(
        None, description="Name of a Dataset resource in the same namespace."
    )
    uri: ArtifactURI | None = Field(
        None, description="URI of an already prepared dataset artifact (a kubetune dataset dir)."
    )
    namespace: str | None = Field(
        None, description="Not supported: datasets must be in the same namespace."
    )

    __cel_rules__ = (
        {"rule": "has(self.name) != has(self.uri)", "message": "set exactly one of name or uri"},
        SAME_NAMESPACE_RULE,
    )

    @field_validator("uri")
    @classmethod
    def _uri(cls, v: str | None) -> str | None:
        return None if v is None else check_uri(v, ARTIFACT_SCHEMES)


class DatasetNameRef(KubeModel):
    """A `Dataset` resource in the same namespace, by name (no URI: its settings are needed)."""

    name: ResourceName = Field(description="Name of a Dataset resource in the same namespace.")
    namespace: str | None = Field(
        None, description="Not supported: datasets must be in the same namespace."
    )

    __cel_rules__ = (SAME_NAMESPACE_RULE,)


class SecretKeySelector(KubeModel):
    """A key of a Secret in the resource's namespace; the value is only ever injected as env."""

    name: ResourceName = Field(description="Name of the Secret.")
    key: Annotated[
        str, StringConstraints(min_length=1, max_length=253, pattern=r"^[-._a-zA-Z0-9]+$")
    ] = Field(description="Key within the Secret (a valid Secret key: [-._a-zA-Z0-9]+).")


class SecretRef(KubeModel):
    """Wrapper matching Kubernetes' ``valueFrom.secretKeyRef`` shape."""

    secret_key_ref: SecretKeySelector = Field(description="The Secret key holding the value.")


class Credentials(KubeModel):
    """Secrets handed to the step's pod as environment variables, never inlined."""

    hf_token: SecretRef | None = Field(
        None, description="Hugging Face token for hf:// sources (env HF_TOKEN)."
    )
    aws_access_key_id: SecretRef | None = Field(
        None, description="S3 access key id (env AWS_ACCESS_KEY_ID)."
    )
    aws_secret_access_key: SecretRef | None = Field(
        None, description="S3 secret access key (env AWS_SECRET_ACCESS_KEY)."
    )
    s3_endpoint_url: str | None = Field(
        None, description="S3-compatible endpoint URL (MinIO, Ceph...); empty for AWS."
    )
    s3_region: str | None = Field(None, description="S3 region (env AWS_DEFAULT_REGION).")


# --- scheduling and resources ---------------------------------------------------------------


class Resources(KubeModel):
    """Compute for the step's pods: GPUs, CPU, memory, placement and queueing."""

    gpus: int = Field(0, ge=0, le=64, description="GPUs per node (nvidia.com/gpu).")
    gpu_type: LabelValue | None = Field(
        None,
        description="GPU product to schedule on (matched against the node label "
        "nvidia.com/gpu.product), e.g. NVIDIA-H100-80GB-HBM3.",
    )
    cpu: Quantity | None = Field(None, description="CPU request and limit, e.g. '4' or '500m'.")
    memory: Quantity | None = Field(None, description="Memory request and limit, e.g. '32Gi'.")
    nodes: int = Field(
        1, ge=1, le=256, description="Number of nodes; more than 1 runs a multi-node torchrun job."
    )
    shared_memory: Quantity | None = Field(
        None, description="Size of the /dev/shm emptyDir for GPU jobs (default: half of memory)."
    )
    node_selector: LabelMap | None = Field(None, description="Node labels to select on.")
    tolerations: list[Toleration] | None = Field(
        None, max_length=32, description="Tolerations for tainted nodes."
    )
    affinity: Affinity | None = Field(
        None, description="A core/v1 Affinity, copied to the pod spec (validated as the API does)."
    )
    priority_class_name: DNSSubdomain | None = Field(None, description="PriorityClass of the pods.")
    queue_name: LabelValue | None = Field(
        None, description="Kueue LocalQueue name (sets the kueue.x-k8s.io/queue-name label)."
    )

    __cel_rules__ = (
        {
            "rule": "self.nodes == 1 || self.gpus > 0 || has(self.cpu)",
            "message": "multi-node jobs need gpus or cpu set per node",
            "fieldPath": ".nodes",
        },
    )


class RetryPolicy(KubeModel):
    """How often a failed step is retried. Preemption and node disruption never count."""

    backoff_limit: int = Field(2, ge=0, le=20, description="Pod failures tolerated per run.")


class OutputSpec(KubeModel):
    """Where the step writes its artifact."""

    uri: ArtifactURI | None = Field(
        None,
        description="Artifact location. Default: the operator's artifact store, "
        "<store>/<namespace>/<kind>/<name>/<run>.",
    )

    @field_validator("uri")
    @classmethod
    def _uri(cls, v: str | None) -> str | None:
        return None if v is None else check_uri(v, ARTIFACT_SCHEMES)


class RunSettings(KubeModel):
    """Fields every runnable kind shares: placement, limits, retries, output, secrets."""

    resources: Resources = Field(default_factory=Resources, description="Compute and placement.")
    output: OutputSpec = Field(default_factory=OutputSpec, description="Output location.")
    credentials: Credentials | None = Field(None, description="Secrets the step may use.")
    suspend: bool = Field(False, description="Suspend the run (the Job is suspended, not deleted).")
    active_deadline_seconds: int | None = Field(
        None, ge=1, description="Wall-clock limit of one run, after which it fails."
    )
    retry: RetryPolicy = Field(default_factory=RetryPolicy, description="Retry policy.")
    image: str | None = Field(
        None,
        pattern=r"^\S+$",
        max_length=1024,
        description="Override the workload image configured in the operator; it must be in "
        "the operator's allowlist (else the run fails with ImageNotAllowed).",
    )


# --- status ---------------------------------------------------------------------------------

Phase = Literal["Pending", "Waiting", "Running", "Succeeded", "Failed", "Suspended", "Ready"]
ConditionStatus = Literal["True", "False", "Unknown"]
CamelReason = Annotated[str, StringConstraints(pattern=r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$")]


class Condition(KubeModel):
    """A metav1.Condition."""

    type: str = Field(description="Type of condition, e.g. Ready, Succeeded, Waiting.")
    status: ConditionStatus = Field(description="True, False or Unknown.")
    reason: CamelReason = Field(description="Machine-readable CamelCase reason.")
    message: str = Field("", description="Human-readable detail.")
    observed_generation: int | None = Field(
        None, description="The .metadata.generation the condition was computed from."
    )
    last_transition_time: datetime | None = Field(None, description="When the status last changed.")


class RunRecord(KubeModel):
    """One run of a resource's step (one per generation, or per FeedbackLoop cycle)."""

    run_id: str = Field(description="Run identifier, part of child object names.")
    generation: int | None = Field(None, description="Resource generation the run was for.")
    phase: Phase = Field(description="Final or current phase of the run.")
    reason: str | None = Field(None, description="Reason of the final condition.")
    message: str | None = Field(None, description="Message of the final condition.")
    start_time: datetime | None = Field(None, description="When the run started.")
    completion_time: datetime | None = Field(None, description="When the run ended.")
    output_uri: str | None = Field(None, description="Artifact the run produced.")
    results: dict[str, float] | None = Field(None, description="Key metrics of the run.")


class Usage(KubeModel):
    """Compute a run consumed, for chargeback and quotas (requested amounts x pod wall time)."""

    gpu_seconds: float = Field(
        0, description="Requested GPUs per pod x wall time of the run's pods, summed."
    )
    cpu_seconds: float = Field(
        0, description="Requested CPUs per pod x wall time of the run's pods, summed."
    )
    gpus: int = Field(0, description="GPUs requested by the run (per node x nodes).")
    queue: str | None = Field(None, description="Kueue queue of the run, if any.")


class Progress(KubeModel):
    """Live training progress."""

    step: int = Field(0, description="Optimizer steps done.")
    total_steps: int | None = Field(None, description="Optimizer steps planned.")
    epoch: float | None = Field(None, description="Fractional epoch.")
    loss: float | None = Field(None, description="Latest training loss.")
    learning_rate: float | None = Field(None, description="Current learning rate.")
    tokens_per_second: float | None = Field(None, description="Training throughput.")
    eta_seconds: float | None = Field(None, description="Estimated seconds to finish.")


class CommonStatus(KubeModel):
    """Status fields of every kind. Recomputed from the world; never edited by users."""

    phase: Phase | None = Field(None, description="Convenience summary of the conditions.")
    conditions: list[Condition] = Field(default_factory=list, description="Current conditions.")
    observed_generation: int | None = Field(None, description="Generation last reconciled.")
    run_id: str | None = Field(None, description="Current run identifier.")
    start_time: datetime | None = Field(None, description="Start of the current run.")
    completion_time: datetime | None = Field(None, description="End of the current run.")
    output_uri: str | None = Field(None, description="Artifact produced by the current run.")
    artifact_hash: str | None = Field(
        None, description="Content hash from the artifact's manifest."
    )
    run_hash: str | None = Field(
        None,
        description="Hash of what defines the current run: the spec (but suspend) and the "
        "artifacts of the resources it depends on. A change starts a new run.",
    )
    results: dict[str, float] | None = Field(None, description="Key metrics of the current run.")
    message: str | None = Field(None, description="Summary of the current state.")
    log_path: str | None = Field(None, description="Where the current run's logs are (local runs).")
    history: list[RunRecord] = Field(
        default_factory=list, description="Earlier runs, newest first."
    )
    usage: Usage | None = Field(
        None, description="GPU- and CPU-seconds of the current run (so far, while it runs)."
    )


def condition(conditions: list[Condition], type_: str) -> Condition | None:
    """The condition of the given type, if present."""
    return next((c for c in conditions if c.type == type_), None)
