"""`kubetune operator`: run the kopf operator with kubetune's handlers.

Arguments left as None are taken from the environment, then from defaults:

==========================  ==========================================================
``KUBETUNE_NAMESPACES``     comma-separated namespaces to watch (empty: cluster-wide)
``KUBETUNE_CPU_IMAGE``      image of CPU steps (dataprep)
``KUBETUNE_CUDA_IMAGE``     image of GPU steps (finetune, compress, evaluate)
``KUBETUNE_ARTIFACT_STORE`` where outputs go when a spec sets none (``pvc://``, ``s3://``)
``KUBETUNE_METRICS_PORT``   Prometheus port (0 disables the exporter)
``KUBETUNE_LOG_FORMAT``     ``plain``, ``full`` or ``json``
==========================  ==========================================================
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Mapping, Sequence

import kopf

from kubetune.controllers.registry import PEERING_NAME, build_registry
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


def config_from_env(config: OperatorConfig, env: Mapping[str, str]) -> OperatorConfig:
    """``config`` with the images and artifact store set from the environment, when set there."""
    for field, var in _CONFIG_ENV.items():
        value = env.get(var)
        if value:
            config = dataclasses.replace(config, **{field: value})  # type: ignore[arg-type]
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


def run_operator(
    namespaces: Sequence[str] | None = None,
    config: OperatorConfig | None = None,
    metrics_port: int | None = None,
    liveness: str | None = DEFAULT_LIVENESS,
    log_format: str | None = None,
    *,
    standalone: bool = False,
    peering_name: str = PEERING_NAME,
    priority: int = 0,
    verbose: bool = False,
    env: Mapping[str, str] | None = None,
) -> None:
    """Run the operator until it is stopped (SIGINT/SIGTERM).

    ``namespaces`` None: ``KUBETUNE_NAMESPACES``, else cluster-wide. ``config`` None: defaults
    plus the ``KUBETUNE_*`` image/store variables (which also override a given config).
    ``liveness``: kopf's probe endpoint (``http://0.0.0.0:8081/healthz``), None to disable.
    ``standalone``: no peering (a single replica); otherwise replicas coordinate through
    kopf's peering objects named ``peering_name`` and the highest ``priority`` works.
    """
    environ = os.environ if env is None else env
    effective = config_from_env(config or OperatorConfig(), environ)
    watched = list(namespaces) if namespaces else namespaces_from_env(environ)
    port = _metrics_port(metrics_port, environ)
    fmt = (log_format or environ.get("KUBETUNE_LOG_FORMAT") or "plain").lower()
    if fmt not in LOG_FORMATS:
        raise ValueError(f"log format must be one of {', '.join(LOG_FORMATS)}, not {fmt!r}")
    kopf.configure(verbose=verbose, log_format=LOG_FORMATS[fmt])
    logging.getLogger("kubetune").info(
        "kubetune operator: namespaces=%s cpu_image=%s cuda_image=%s store=%s metrics_port=%s",
        ",".join(watched) if watched else "<all>",
        effective.cpu_image,
        effective.cuda_image,
        effective.artifact_store,
        port,
    )
    kopf.run(
        registry=build_registry(effective, metrics_port=port),
        clusterwide=not watched,
        namespaces=watched or (),
        standalone=standalone,
        peering_name=peering_name,
        priority=priority,
        liveness_endpoint=liveness,
    )
