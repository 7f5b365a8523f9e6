"""Real servers on 127.0.0.1 for the publish and tracking tests: `mlflow server` and an OCI
registry (Debian's `docker-registry`, the CNCF distribution registry).

Each runs as a child process on a free port under a temporary directory, is waited for until it
answers, and is stopped (and its log attached to the failure) when the block ends.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.helpers.moto_s3 import free_port

MLFLOW_START_TIMEOUT_S = 90.0
REGISTRY_START_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class RunningServer:
    """A started server: its base URL, its working directory and its log file."""

    url: str
    root: Path
    log: Path


def _wait_until_answers(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url}: server exited with {proc.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise RuntimeError(f"{url}: no answer within {timeout:.0f} s:\n{log.read_text()}")


@contextmanager
def _process(
    argv: list[str], root: Path, env: dict[str, str]
) -> Iterator[tuple[Path, subprocess.Popen[bytes]]]:
    log = root / "server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            argv, cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        yield log, proc
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=15)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=15)


@contextmanager
def mlflow_server(root: Path) -> Iterator[RunningServer]:
    """A real `mlflow server` (sqlite backend, artifacts proxied to a local directory)."""
    root.mkdir(parents=True, exist_ok=True)
    port = free_port()
    mlflow = Path(sys.executable).with_name("mlflow")
    argv = [
        str(mlflow), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
        "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
        "--artifacts-destination", str(root / "artifacts"),
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    with _process(argv, root, env) as (log, proc):
        url = f"http://127.0.0.1:{port}"
        _wait_until_answers(url + "/health", proc, log, MLFLOW_START_TIMEOUT_S)
        yield RunningServer(url=url, root=root, log=log)


@contextmanager
def oci_registry(root: Path) -> Iterator[RunningServer]:
    """A real OCI distribution registry (`docker-registry` from Debian), plain HTTP."""
    binary = shutil.which("docker-registry")
    if binary is None:
        raise RuntimeError("docker-registry is not installed (apt-get install docker-registry)")
    root.mkdir(parents=True, exist_ok=True)
    port = free_port()
    config = root / "config.yml"
    config.write_text(
        "version: 0.1\n"
        f"storage:\n  filesystem:\n    rootdirectory: {root / 'data'}\n"
        "  delete:\n    enabled: true\n"
        f"http:\n  addr: 127.0.0.1:{port}\n  secret: kubetune-tests\n"
        "log:\n  level: warn\n",
        encoding="utf-8",
    )
    with _process([binary, "serve", str(config)], root, dict(os.environ)) as (log, proc):
        url = f"http://127.0.0.1:{port}"
        _wait_until_answers(url + "/v2/", proc, log, REGISTRY_START_TIMEOUT_S)
        yield RunningServer(url=url, root=root, log=log)
