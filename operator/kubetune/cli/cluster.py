"""`kubetune operator`: the operator process against a cluster, and its tenancy flags."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated

import typer

from kubetune.cli.common import ArtifactStore, ImageCpu, ImageCuda, Verbose, fail, operator_config

if TYPE_CHECKING:
    from kubetune.plan.world import OperatorConfig

Namespaces = Annotated[
    list[str] | None,
    typer.Option("--namespace", "-n", help="Namespace to watch (repeatable; default: all)."),
]
MetricsPort = Annotated[
    int | None, typer.Option(help="Prometheus port (0 disables; env KUBETUNE_METRICS_PORT).")
]
Liveness = Annotated[str, typer.Option(help="Liveness endpoint served by kopf.")]
LogFormat = Annotated[
    str | None, typer.Option(help="plain, full or json (env KUBETUNE_LOG_FORMAT).")
]
Kubeconfig = Annotated[
    str | None,
    typer.Option(help="kubeconfig file (default: in-cluster account, then KUBECONFIG)."),
]
Context = Annotated[str | None, typer.Option(help="kubeconfig context to use.")]
LeaderElect = Annotated[
    bool,
    typer.Option(help="Only the holder of a coordination.k8s.io Lease acts (HA replicas)."),
]
LeaseNamespace = Annotated[
    str | None, typer.Option(help="Namespace of the Lease (default: POD_NAMESPACE).")
]
LeaseIdentity = Annotated[
    str | None,
    typer.Option(help="This replica's identity (default: POD_NAME, else host_random)."),
]
LeaseDuration = Annotated[float, typer.Option(help="Lease duration, seconds.")]
RenewDeadline = Annotated[float, typer.Option(help="Renew deadline, seconds.")]
RetryPeriod = Annotated[float, typer.Option(help="Lease retry period, seconds.")]
Standalone = Annotated[
    bool, typer.Option(help="Accepted for compatibility: the operator never uses peering.")
]
AllowedImages = Annotated[
    list[str] | None,
    typer.Option(
        help="An image spec.image may name (repeatable; a trailing * matches a prefix). "
        "Default: only the CPU and CUDA images."
    ),
]
WorkloadServiceAccounts = Annotated[
    list[str] | None,
    typer.Option(
        help="ServiceAccount of workload pods: NAME for every namespace, or NAMESPACE=NAME "
        "(repeatable), e.g. for IRSA/workload identity of an s3:// store."
    ),
]
ImagePullSecrets = Annotated[
    list[str] | None,
    typer.Option(help="imagePullSecret of workload pods: NAME, or NAMESPACE=NAME (repeatable)."),
]
DefaultRequests = Annotated[
    list[str] | None,
    typer.Option(
        help="CPU/memory requests of pods whose spec sets none: STEP=CPU,MEMORY (repeatable; "
        "STEP is dataprep, finetune, compress, evaluate, feedback, or STEP-gpu)."
    ),
]
MetricsBindAddress = Annotated[
    str, typer.Option(help="Address of /metrics (127.0.0.1 behind kube-rbac-proxy).")
]


@dataclass(frozen=True)
class OperatorFlags:
    """The flags of `kubetune operator`, named as its parameters."""

    namespace: list[str] | None
    image_cpu: str | None
    image_cuda: str | None
    artifact_store: str | None
    metrics_port: int | None
    liveness: str
    log_format: str | None
    kubeconfig: str | None
    context: str | None
    leader_elect: bool
    leader_election_namespace: str | None
    leader_election_id: str | None
    lease_duration: float
    renew_deadline: float
    retry_period: float
    standalone: bool
    allowed_image: list[str] | None
    workload_service_account: list[str] | None
    image_pull_secret: list[str] | None
    default_requests: list[str] | None
    metrics_bind_address: str
    verbose: bool


def operator(
    namespace: Namespaces = None,
    image_cpu: ImageCpu = None,
    image_cuda: ImageCuda = None,
    artifact_store: ArtifactStore = None,
    metrics_port: MetricsPort = None,
    liveness: Liveness = "http://0.0.0.0:8081/healthz",
    log_format: LogFormat = None,
    kubeconfig: Kubeconfig = None,
    context: Context = None,
    leader_elect: LeaderElect = False,
    leader_election_namespace: LeaseNamespace = None,
    leader_election_id: LeaseIdentity = None,
    lease_duration: LeaseDuration = 15.0,
    renew_deadline: RenewDeadline = 10.0,
    retry_period: RetryPeriod = 2.0,
    standalone: Standalone = True,
    allowed_image: AllowedImages = None,
    workload_service_account: WorkloadServiceAccounts = None,
    image_pull_secret: ImagePullSecrets = None,
    default_requests: DefaultRequests = None,
    metrics_bind_address: MetricsBindAddress = "0.0.0.0",
    verbose: Verbose = False,
) -> None:
    """Run the operator against the cluster of the pod's service account or the kubeconfig.

    Exit codes: 2 no credentials or bad flags, 1 the API server is unreachable, refuses the
    credentials or does not serve kubetune's CRDs, 3 the leader Lease was lost.
    """
    _start_operator(OperatorFlags(**locals()))  # every parameter, by name


def _start_operator(flags: OperatorFlags) -> None:
    """Run the operator with ``flags``; exit with the code of why it could not start."""
    from kubetune.controllers.credentials import KubeAccess
    from kubetune.controllers.main import CannotStart, LeaderElection, run_operator

    try:
        election = LeaderElection(
            enabled=flags.leader_elect,
            namespace=flags.leader_election_namespace,
            identity=flags.leader_election_id,
            lease_duration=flags.lease_duration,
            renew_deadline=flags.renew_deadline,
            retry_period=flags.retry_period,
        )
        run_operator(
            namespaces=flags.namespace or None,
            config=tenancy_config(
                operator_config(flags.image_cpu, flags.image_cuda, flags.artifact_store),
                allowed_images=flags.allowed_image or [],
                service_accounts=flags.workload_service_account or [],
                pull_secrets=flags.image_pull_secret or [],
                default_requests=flags.default_requests or [],
                metrics_bind_address=flags.metrics_bind_address,
            ),
            metrics_port=flags.metrics_port,
            liveness=flags.liveness,
            log_format=flags.log_format,
            access=KubeAccess(kubeconfig=flags.kubeconfig, context=flags.context),
            leader_election=election,
            verbose=flags.verbose,
        )
    except CannotStart as exc:
        fail(str(exc), exc.exit_code)
    except ValueError as exc:
        fail(str(exc), 2)


def tenancy_config(
    config: OperatorConfig,
    *,
    allowed_images: list[str],
    service_accounts: list[str],
    pull_secrets: list[str],
    default_requests: list[str],
    metrics_bind_address: str = "0.0.0.0",
) -> OperatorConfig:
    """``config`` with the tenancy flags of `kubetune operator` (ValueError on a bad one)."""

    def split(values: list[str]) -> tuple[list[str], list[tuple[str, str]]]:
        plain = [v for v in values if "=" not in v]
        scoped = [tuple(v.split("=", 1)) for v in values if "=" in v]
        return plain, [(ns, name) for ns, name in scoped]

    accounts, scoped_accounts = split(service_accounts)
    if len(accounts) > 1:
        raise ValueError("--workload-service-account NAME may be given once (else NS=NAME)")
    secrets, scoped_secrets = split(pull_secrets)
    requests = dict((step, (cpu, memory)) for step, cpu, memory in config.default_requests)
    for entry in default_requests:
        step, _, amounts = entry.partition("=")
        cpu, _, memory = amounts.partition(",")
        if not step or not cpu or not memory:
            raise ValueError(f"--default-requests {entry!r}: expected STEP=CPU,MEMORY")
        requests[step] = (cpu, memory)
    return dataclasses.replace(
        config,
        allowed_images=tuple(allowed_images),
        service_account=accounts[0] if accounts else config.service_account,
        namespace_service_accounts=tuple(scoped_accounts),
        image_pull_secrets=(*config.image_pull_secrets, *secrets),
        namespace_image_pull_secrets=tuple(scoped_secrets),
        default_requests=tuple((s, c, m) for s, (c, m) in requests.items()),
        metrics_bind_address=metrics_bind_address,
    )
