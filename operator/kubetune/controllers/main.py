"""`kubetune operator`: log in, check the API server, optionally win the leader Lease, run kopf.

Arguments left as None are taken from the environment, then from defaults:

==========================  ==========================================================
``KUBETUNE_NAMESPACES``     comma-separated namespaces to watch (empty: cluster-wide)
``KUBETUNE_CPU_IMAGE``      image of CPU steps (dataprep)
``KUBETUNE_CUDA_IMAGE``     image of GPU steps (finetune, compress, evaluate)
``KUBETUNE_ARTIFACT_STORE`` where outputs go when a spec sets none (``pvc://``, ``s3://``)
``KUBETUNE_METRICS_PORT``   Prometheus port (0 disables the exporter)
``KUBETUNE_LOG_FORMAT``     ``plain``, ``full`` or ``json``
``POD_NAME``/``POD_NAMESPACE``  the leader-election identity and the Lease's namespace
==========================  ==========================================================

Before kopf starts, :func:`preflight` logs in (:mod:`kubetune.controllers.credentials`) and asks
the API server for its version and for kubetune's API group, so a missing credential, a dead or
refusing server, or CRDs that are not installed end the process with :class:`CannotStart` and
one line saying which. kopf runs standalone (no kopf peering): with ``leader_elect``, replicas
coordinate through a Lease (:mod:`kubetune.controllers.leader`) and only the leader runs kopf;
a standby serves the liveness endpoint while it waits.
"""

from __future__ import annotations

import dataclasses
import http.server
import logging
import os
import signal
import socket
import threading
import urllib.parse
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from types import FrameType
from typing import Any

import kopf

from kubetune.api.common import API_VERSION
from kubetune.controllers import metrics
from kubetune.controllers.credentials import KubeAccess, LoginFailed
from kubetune.controllers.kube import Api, APIError, NotFound, Unreachable
from kubetune.controllers.leader import LeaderElector, LeaseConfig
from kubetune.controllers.registry import build_registry
from kubetune.plan.world import OperatorConfig

DEFAULT_METRICS_PORT = 8080
DEFAULT_LIVENESS = "http://0.0.0.0:8081/healthz"
LOG_FORMATS = {
    "plain": kopf.LogFormat.PLAIN,
    "full": kopf.LogFormat.FULL,
    "json": kopf.LogFormat.JSON,
}
_CONFIG_ENV = {
    "cpu_image": "KUBETUNE_CPU_IMAGE",
    "cuda_image": "KUBETUNE_CUDA_IMAGE",
    "artifact_store": "KUBETUNE_ARTIFACT_STORE",
}
# Exit codes of `kubetune operator` (documented in docs/operator.md).
EXIT_CANNOT_START = 2
EXIT_SERVER_PROBLEM = 1
EXIT_LOST_LEASE = 3

logger = logging.getLogger("kubetune")


class CannotStart(RuntimeError):
    """The operator cannot start; ``exit_code`` says whether the cause is local (2) or the API
    server's (1)."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclasses.dataclass(frozen=True)
class LeaderElection:
    """``kubetune operator --leader-elect`` settings; namespace/identity None: from the pod."""

    enabled: bool = False
    namespace: str | None = None
    identity: str | None = None
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0


def config_from_env(config: OperatorConfig, env: Mapping[str, str]) -> OperatorConfig:
    """``config`` with the images and artifact store set from the environment, when set there."""
    for field, var in _CONFIG_ENV.items():
        value = env.get(var)
        if value:
            changes: dict[str, Any] = {field: value}
            config = dataclasses.replace(config, **changes)
    return config


def namespaces_from_env(env: Mapping[str, str]) -> list[str] | None:
    """``KUBETUNE_NAMESPACES`` as a list; None (cluster-wide) when unset or empty."""
    names = [n.strip() for n in env.get("KUBETUNE_NAMESPACES", "").split(",") if n.strip()]
    return names or None


def _metrics_port(value: int | None, env: Mapping[str, str]) -> int | None:
    if value is None:
        text = env.get("KUBETUNE_METRICS_PORT", "").strip()
        value = int(text) if text else DEFAULT_METRICS_PORT
    return value or None


def preflight(api: Api) -> str:
    """Log in and check that the API server answers and serves kubetune's API group.

    Returns where the credentials came from; raises :class:`CannotStart` otherwise.
    """
    try:
        login = api.login
    except LoginFailed as exc:
        raise CannotStart(str(exc), EXIT_CANNOT_START) from None
    server = f"the Kubernetes API server at {login.configuration.host} ({login.source})"
    try:
        api.request("GET", "/version")
    except Unreachable as exc:
        raise CannotStart(f"cannot reach {server}: {exc}", EXIT_SERVER_PROBLEM) from None
    except APIError as exc:
        raise CannotStart(
            f"{server} refused the credentials: {exc.status} {exc.message}", EXIT_SERVER_PROBLEM
        ) from None
    try:
        api.request("GET", f"/apis/{API_VERSION}")
    except NotFound:
        raise CannotStart(
            f"{server} does not serve {API_VERSION}: install kubetune's CRDs "
            "(helm install, or kubectl apply -f crds/)",
            EXIT_SERVER_PROBLEM,
        ) from None
    except APIError as exc:
        raise CannotStart(
            f"{server} answered {exc.status} for {API_VERSION}: {exc.message}",
            EXIT_SERVER_PROBLEM,
        ) from None
    return login.source


class _Healthy(http.server.BaseHTTPRequestHandler):
    """Answers the liveness probe of a standby replica (kopf serves it once leading)."""

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.end_headers()
        self.wfile.write(b"standby\n")

    def log_message(self, format: str, *args: object) -> None:
        return None


@contextmanager
def _standby_probe(liveness: str | None) -> Iterator[None]:
    """Serve ``liveness`` while this replica stands by, and free its port afterwards."""
    if not liveness:
        yield
        return
    parsed = urllib.parse.urlsplit(liveness)
    server = http.server.ThreadingHTTPServer(
        (parsed.hostname or "0.0.0.0", parsed.port or 80), _Healthy
    )
    thread = threading.Thread(target=server.serve_forever, name="standby-probe", daemon=True)
    thread.start()
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()


def _lease_config(election: LeaderElection, api: Api, env: Mapping[str, str]) -> LeaseConfig:
    namespace = election.namespace or env.get("POD_NAMESPACE") or api.login.namespace
    # A pod's name is unique while it lives, and a restarted container of the same pod is the
    # same holder (it renews at once instead of waiting out its own Lease); elsewhere the host
    # name plus a random suffix, as client-go does.
    identity = (
        election.identity or env.get("POD_NAME") or f"{socket.gethostname()}_{uuid.uuid4().hex[:8]}"
    )
    return LeaseConfig(
        namespace=namespace,
        identity=identity,
        lease_duration=election.lease_duration,
        renew_deadline=election.renew_deadline,
        retry_period=election.retry_period,
    )


def _lose_lease(why: str) -> None:
    """Leave at once: another replica may act from now on, and two must never act together."""
    logger.error("lost the leader Lease (%s); exiting so that only one replica acts", why)
    for handler in logging.getLogger().handlers:
        handler.flush()
    os._exit(EXIT_LOST_LEASE)


def _wait_for_lease(elector: LeaderElector, liveness: str | None) -> bool:
    """Stand by until leading; SIGTERM/SIGINT while standing by ends the wait (False)."""
    stop = threading.Event()

    def stop_waiting(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, stop_waiting) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        with _standby_probe(liveness):
            return elector.acquire(stop)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _log_format(flag: str | None, environ: Mapping[str, str]) -> kopf.LogFormat:
    """kopf's log format of ``--log-format``, else ``KUBETUNE_LOG_FORMAT``, else plain."""
    fmt = (flag or environ.get("KUBETUNE_LOG_FORMAT") or "plain").lower()
    if fmt not in LOG_FORMATS:
        raise ValueError(f"log format must be one of {', '.join(LOG_FORMATS)}, not {fmt!r}")
    return LOG_FORMATS[fmt]


def _log_start(
    source: str, watched: list[str] | None, config: OperatorConfig, metrics_port: int | None
) -> None:
    """The start-up line: where the credentials came from, what is watched, images, store."""
    logger.info(
        "kubetune operator: %s; namespaces=%s cpu_image=%s cuda_image=%s store=%s metrics_port=%s",
        source,
        ",".join(watched) if watched else "<all>",
        config.cpu_image,
        config.cuda_image,
        config.artifact_store,
        metrics_port,
    )


def _lead(elector: LeaderElector, liveness: str | None) -> bool:
    """Stand by until this replica holds the Lease, then keep renewing it (losing it ends the
    process); False when stopped while standing by."""
    metrics.IS_LEADER.set(0)
    if not _wait_for_lease(elector, liveness):
        logger.info("stopped while standing by")
        return False
    elector.keep(_lose_lease)
    return True


def run_operator(
    namespaces: Sequence[str] | None = None,
    config: OperatorConfig | None = None,
    metrics_port: int | None = None,
    liveness: str | None = DEFAULT_LIVENESS,
    log_format: str | None = None,
    *,
    access: KubeAccess = KubeAccess(),
    leader_election: LeaderElection = LeaderElection(),
    verbose: bool = False,
    env: Mapping[str, str] | None = None,
) -> None:
    """Run the operator until it is stopped (SIGINT/SIGTERM).

    ``namespaces`` None: ``KUBETUNE_NAMESPACES``, else cluster-wide. ``config`` None: defaults
    plus the ``KUBETUNE_*`` image/store variables (which also override a given config).
    ``liveness``: the probe endpoint (``http://0.0.0.0:8081/healthz``), None to disable.
    ``access``: where the credentials come from. ``leader_election``: see :class:`LeaderElection`.
    Raises :class:`CannotStart` (and ``ValueError`` for bad arguments) before anything runs.
    """
    environ = os.environ if env is None else env
    effective = config_from_env(config or OperatorConfig(), environ)
    watched = list(namespaces) if namespaces else namespaces_from_env(environ)
    port = _metrics_port(metrics_port, environ)
    kopf.configure(verbose=verbose, log_format=_log_format(log_format, environ))
    api = Api(access)
    _log_start(preflight(api), watched, effective, port)
    # Every replica serves /metrics from its start: a standby is a healthy scrape target too.
    exporter = metrics.start_exporter(port, effective.metrics_bind_address) if port else None
    elector: LeaderElector | None = None
    try:
        if leader_election.enabled:
            lease_api = Api(access, retry_delays=(0.2, 0.5), timeout=(3.0, 5.0))
            elector = LeaderElector(lease_api, _lease_config(leader_election, api, environ))
            if not _lead(elector, liveness):
                return
        metrics.IS_LEADER.set(1)
        api.close()
        kopf.run(
            registry=build_registry(effective, access=access),
            clusterwide=not watched,
            namespaces=watched or (),
            standalone=True,
            liveness_endpoint=liveness,
        )
    finally:
        if elector is not None:
            elector.release()
        if exporter is not None:
            exporter.shutdown()
            exporter.server_close()
