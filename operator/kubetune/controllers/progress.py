"""Live progress of a running step, read from its pod's progress endpoint.

The workload serves ``GET http://<podIP>:<port>/progress`` (JSON, :class:`LiveProgress`). The
operator reads it while a run is Running; any failure (no IP yet, refused, timeout, bad JSON)
means "no progress this time", never an error of the reconciliation.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

import aiohttp
from pydantic import ValidationError

from kubetune.api.steps import LiveProgress

TIMEOUT_SECONDS = 2.0


def running_pod_ip(pods: Iterable[Mapping[str, Any]]) -> str | None:
    """The IP of a Running pod (index 0 of a multi-node run comes first when named so)."""
    running = [p for p in pods if (p.get("status") or {}).get("phase") == "Running"]
    running.sort(key=lambda p: str((p.get("metadata") or {}).get("name", "")))
    for pod in running:
        ip = (pod.get("status") or {}).get("podIP")
        if ip:
            return str(ip)
    return None


async def fetch_progress(
    session: aiohttp.ClientSession,
    pod_ip: str,
    port: int,
    logger: logging.Logger | logging.LoggerAdapter[Any],
    timeout: float = TIMEOUT_SECONDS,
) -> LiveProgress | None:
    """The pod's live progress, or None when it cannot be read."""
    host = f"[{pod_ip}]" if ":" in pod_ip else pod_ip
    url = f"http://{host}:{port}/progress"
    try:
        async with session.get(url, timeout=aiohttp.ClientTimeout(total=timeout)) as response:
            if response.status != 200:
                logger.debug("progress endpoint %s answered %s", url, response.status)
                return None
            data = await response.json(content_type=None)
        return LiveProgress.model_validate(data)
    except (TimeoutError, aiohttp.ClientError, ValueError, ValidationError) as exc:
        logger.debug("cannot read progress from %s: %s", url, exc)
        return None
