"""``kubetune operator`` started exactly as the chart's Deployment starts it, outside a pod.

:func:`deployment_command` takes the rendered Deployment's container: ``command`` (absent:
the ENTRYPOINT of images/operator.Dockerfile, ``kubetune operator``, whose ``kubetune`` is the
venv's console script) plus ``args``, and the container's ``env`` with the downward-API values
the pod would get (``POD_NAME``, ``POD_NAMESPACE``). :class:`OperatorProcess` runs it as a
separate process with only a kubeconfig (``KUBECONFIG``) and an empty ``HOME`` -- as a
platform engineer would on a workstation -- in a network namespace of its own
(:mod:`tests.install.sandbox`, ``host_root``): the API server's port is forwarded in, and the
chart's fixed ``:8080`` metrics and ``:8081`` health ports cannot collide with anything on the
machine or with a second replica.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from tests.install.images import ImageCatalog
from tests.install.kubelet import container_command, expand, field_value
from tests.install.sandbox import HostRelay, Sandbox, SandboxSpec, short_state_root


def operator_container(rendered: list[dict[str, Any]]) -> dict[str, Any]:
    """The Deployment's ``operator`` container (not a sidecar such as kube-rbac-proxy)."""
    deployment = next(o for o in rendered if o["kind"] == "Deployment")
    containers = deployment["spec"]["template"]["spec"]["containers"]
    container: dict[str, Any] = next(c for c in containers if c["name"] == "operator")
    return container


def deployment_command(
    rendered: list[dict[str, Any]], pod_name: str, namespace: str
) -> tuple[list[str], dict[str, str]]:
    """(argv, env) of the Deployment's container, for a pod named ``pod_name``."""
    container = operator_container(rendered)
    image = ImageCatalog().resolve(container["image"])
    pod = {
        "metadata": {"name": pod_name, "namespace": namespace, "uid": f"uid-{pod_name}"},
        "spec": {"nodeName": "workstation"},
        "status": {"podIP": "127.0.0.1", "hostIP": "127.0.0.1"},
    }
    env = image.runtime_env()
    env["HOSTNAME"] = pod_name
    for var in container.get("env") or []:
        source = var.get("valueFrom")
        if source is None:
            env[var["name"]] = expand(str(var.get("value", "")), env)
        elif "fieldRef" in source:
            env[var["name"]] = field_value(pod, source["fieldRef"]["fieldPath"])
        else:
            raise AssertionError(f"the operator's env {var['name']} needs a cluster: {source}")
    return container_command(container, image, env), env


class OperatorProcess:
    """One ``kubetune operator`` process (see the module docstring)."""

    def __init__(
        self,
        argv: list[str],
        env: dict[str, str],
        workdir: Path,
        api_port: int,
        *,
        name: str = "operator",
    ) -> None:
        self.argv = argv
        self.env = env
        self.workdir = workdir
        self.name = name
        self.api_port = api_port
        self.log_path = workdir / f"{name}.log"
        self._state_root = short_state_root()
        self._relay = HostRelay(self._state_root)
        self._sandbox: Sandbox | None = None
        self.starts = 0

    def start(self) -> OperatorProcess:
        self.starts += 1
        state = self._state_root / f"run-{self.starts}"
        state.mkdir()
        with self.log_path.open("ab") as output:
            output.write(f"--- start {self.starts}: {' '.join(self.argv)}\n".encode())
            output.flush()
            spec = SandboxSpec(
                argv=self.argv,
                env=self.env,
                hostname=self.env.get("HOSTNAME", self.name),
                host_ports=[self.api_port],
                exposed_ports=[8080, 8081],
                host_root=True,
            )
            self._sandbox = Sandbox(spec, self._relay, state, output)
            self._sandbox.start()
        return self

    @property
    def sandbox(self) -> Sandbox:
        assert self._sandbox is not None, "not started"
        return self._sandbox

    @property
    def alive(self) -> bool:
        return self._sandbox is not None and self._sandbox.poll() is None

    def kill(self) -> None:
        """SIGKILL: the process (and everything it started) ends at once."""
        if self._sandbox is not None:
            self._sandbox.kill()

    def stop(self, grace: float = 10) -> int | None:
        """SIGTERM, then SIGKILL after ``grace``."""
        if self._sandbox is None:
            return None
        return self._sandbox.terminate(grace)

    def wait(self, timeout: float) -> int:
        return self.sandbox.wait(timeout)

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def healthy(self) -> bool:
        """kopf's /healthz answers 200 (what the chart's probes check)."""
        with contextlib.suppress(OSError):
            status, _ = self.sandbox.http_get(8081, "/healthz", timeout=2)
            return status == 200
        return False

    def wait_healthy(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not self.healthy():
            if not self.alive:
                raise AssertionError(f"{self.name} exited:\n{self.logs()[-3000:]}")
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{self.name} not healthy after {timeout:g}s:\n{self.logs()[-3000:]}"
                )
            time.sleep(0.1)

    def close(self) -> None:
        if self.alive:
            self.kill()
        self._relay.close()
        import shutil

        shutil.rmtree(self._state_root, ignore_errors=True)

    def __enter__(self) -> OperatorProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


def run_to_exit(argv: list[str], env: dict[str, str], timeout: float = 60) -> tuple[int, str, str]:
    """Run a short-lived ``kubetune operator`` (in its own network namespace): exit code,
    stdout and stderr."""
    root = short_state_root()
    relay = HostRelay(root)
    try:
        state = root / "s"
        state.mkdir()
        out_path, err_path = root / "out", root / "err"
        spec = SandboxSpec(argv=argv, env=env, host_root=True)
        sandbox = Sandbox(spec, relay, state, subprocess.DEVNULL)
        command = sandbox.command()
        with out_path.open("wb") as out, err_path.open("wb") as err:
            process = subprocess.Popen(
                command, stdout=out, stderr=err, stdin=subprocess.DEVNULL, start_new_session=True
            )
            try:
                code = process.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    import os

                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()
                raise
        return code, out_path.read_text(errors="replace"), err_path.read_text(errors="replace")
    finally:
        relay.close()
        import shutil

        shutil.rmtree(root, ignore_errors=True)
