"""The cluster a platform team installs kubetune into: the API emulator, or a real one.

Both backends are driven the same way, with the real ``helm`` and ``kubectl`` binaries and a
kubeconfig; only the install step and what runs pods differ:

* :class:`EmulatedCluster`: the API emulator over HTTPS with a bearer token, the chart rendered
  with ``helm template`` and applied with ``kubectl apply`` (CRDs, then the release namespace,
  ServiceAccount, RBAC, Deployment, Service), and :class:`tests.install.kubelet.Kubelet`
  running the pods (the operator's Deployment and the workloads' Jobs) for real;
* :class:`RealCluster`: ``KUBECONFIG``'s cluster, ``helm upgrade --install`` of the chart,
  the cluster's own controllers and kubelet running the images (``make test-cluster``; the
  values in ``$KUBETUNE_INSTALL_VALUES`` point the chart at locally built images).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import yaml

from tests.install.images import REPO

CHART = REPO / "charts" / "kubetune"
RELEASE = "kubetune"
RELEASE_NS = "kubetune-system"
TOKEN = "install-tier-token"  # the emulator's bearer token (the service account's, too)


class ToolMissing(RuntimeError):
    pass


def helm_binary() -> str:
    """helm: unpacked by scripts/fetch_tools.py into .tools/bin (``make tools``), else PATH."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "fetch_tools", REPO / "scripts" / "fetch_tools.py"
    )
    assert spec is not None and spec.loader is not None
    fetch_tools = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fetch_tools)
    try:
        return str(fetch_tools.ensure_tools(("helm",))[0])
    except Exception as exc:
        found = shutil.which("helm")
        if found:
            return found
        raise ToolMissing(f"helm is required by tests/install: {exc}") from exc


def kubectl_binary() -> str:
    """kubectl: PATH, else .tools/bin (``scripts/fetch_tools.py kubectl``)."""
    found = shutil.which("kubectl") or str(REPO / ".tools" / "bin" / "kubectl")
    if not Path(found).exists():
        raise ToolMissing(
            "kubectl is required by tests/install: put it on PATH or run"
            " `.venv/bin/python scripts/fetch_tools.py kubectl`"
        )
    return found


def render_chart(
    values: dict[str, Any] | None = None,
    *,
    helm: str | None = None,
    namespace: str = RELEASE_NS,
    release: str = RELEASE,
    workdir: Path | None = None,
) -> list[dict[str, Any]]:
    """``helm template`` of the chart (with its CRDs) for ``values``: the objects, in order."""
    args = [helm or helm_binary(), "template", release, str(CHART), "-n", namespace]
    args.append("--include-crds")
    values_file = None
    if values:
        directory = workdir or Path(os.environ.get("TMPDIR", "/tmp"))
        values_file = directory / f"values-{os.getpid()}-{time.monotonic_ns()}.yaml"
        values_file.write_text(yaml.safe_dump(values))
        args += ["-f", str(values_file)]
    try:
        done = subprocess.run(args, capture_output=True, text=True, timeout=60, check=False)
    finally:
        if values_file is not None:
            values_file.unlink(missing_ok=True)
    if done.returncode != 0:
        raise AssertionError(f"helm template failed: {done.stderr}")
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def chart_values() -> dict[str, Any]:
    """The chart's values.yaml as it is now (other engineers change it)."""
    loaded: dict[str, Any] = yaml.safe_load((CHART / "values.yaml").read_text())
    return loaded


def ha_values(replicas: int = 2) -> dict[str, Any]:
    """replicas, plus leader election when the chart exposes it."""
    values: dict[str, Any] = {"replicas": replicas}
    defaults = chart_values()
    if "leaderElection" in defaults:
        values["leaderElection"] = {"enabled": True}
    return values


def merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def one(objects: Sequence[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [o for o in objects if o.get("kind") == kind and name in (None, o["metadata"]["name"])]
    assert len(found) == 1, (
        f"{len(found)} {kind} objects named {name}: {[o['metadata'] for o in found]}"
    )
    return found[0]


class Kubectl:
    """The real kubectl against one kubeconfig."""

    def __init__(self, kubeconfig: Path, binary: str | None = None) -> None:
        self.kubeconfig = kubeconfig
        self.binary = binary or kubectl_binary()

    def run(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "KUBECONFIG": str(self.kubeconfig), "NO_COLOR": "1"}
        done = subprocess.run(
            [self.binary, *args],
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
            check=False,
        )
        if check and done.returncode != 0:
            raise AssertionError(
                f"kubectl {' '.join(args)} exited {done.returncode}:\n{done.stderr}{done.stdout}"
            )
        return done

    def __call__(self, *args: str, **kwargs: Any) -> str:
        return self.run(*args, **kwargs).stdout

    def json(self, *args: str) -> Any:
        return json.loads(self.run(*args, "-o", "json").stdout)

    def get(self, resource: str, name: str, namespace: str | None = None) -> dict[str, Any] | None:
        args = ["get", resource, name, *(["-n", namespace] if namespace else [])]
        done = self.run(*args, "-o", "json", check=False)
        if done.returncode != 0:
            if "NotFound" in done.stderr or "not found" in done.stderr:
                return None
            raise AssertionError(f"kubectl {' '.join(args)}: {done.stderr}")
        found: dict[str, Any] = json.loads(done.stdout)
        return found

    def apply(self, docs: Sequence[dict[str, Any]], directory: Path, name: str) -> str:
        path = directory / f"{name}.yaml"
        path.write_text(yaml.safe_dump_all(list(docs), sort_keys=False))
        return self("apply", "-f", str(path))

    def wait(
        self, what: str, condition: str, namespace: str | None = None, timeout: float = 120
    ) -> str:
        args = ["wait", what, f"--for={condition}", f"--timeout={int(timeout)}s"]
        if namespace:
            args += ["-n", namespace]
        return self(*args, timeout=timeout + 30)


class Platform:
    """What the tests need from a cluster (see the module docstring)."""

    emulated: bool
    kubeconfig: Path
    kubectl: Kubectl
    workdir: Path

    def install(self, values: dict[str, Any]) -> list[dict[str, Any]]:
        raise NotImplementedError

    def uninstall(self) -> None:
        raise NotImplementedError

    def wait_rollout(self, timeout: float = 180) -> None:
        self.kubectl(
            "-n",
            RELEASE_NS,
            "rollout",
            "status",
            f"deployment/{RELEASE}",
            f"--timeout={int(timeout)}s",
            timeout=timeout + 30,
        )

    def operator_pods(self) -> list[dict[str, Any]]:
        found = self.kubectl.json(
            "-n", RELEASE_NS, "get", "pods", "-l", "app.kubernetes.io/component=operator"
        )
        return [p for p in found["items"] if not p["metadata"].get("deletionTimestamp")]

    def pod_logs(self, namespace: str, pod: str) -> str:
        raise NotImplementedError


class EmulatedCluster(Platform):
    """The API emulator, a kubeconfig for it, and the kubelet stand-in."""

    emulated = True

    def __init__(self, emulator: Any, kubelet: Any, workdir: Path, kubeconfig: Path) -> None:
        self.emu = emulator
        self.kubelet = kubelet
        self.workdir = workdir
        self.kubeconfig = kubeconfig
        self.kubectl = Kubectl(kubeconfig)
        self.rendered: list[dict[str, Any]] = []

    def install(
        self, values: dict[str, Any], *, skip_kinds: Sequence[str] = ()
    ) -> list[dict[str, Any]]:
        """What ``helm install --create-namespace`` does, with kubectl: CRDs first (and wait
        until they are established), the namespace, then every other rendered object (but
        those of ``skip_kinds``: without the Deployment, the operator is started by hand)."""
        rendered = render_chart(values, workdir=self.workdir)
        crds = [o for o in rendered if o["kind"] == "CustomResourceDefinition"]
        rest = [
            o
            for o in rendered
            if o["kind"] != "CustomResourceDefinition" and o["kind"] not in skip_kinds
        ]
        self.kubectl.apply(crds, self.workdir, "crds")
        for crd in crds:
            self.kubectl.wait(f"crd/{crd['metadata']['name']}", "condition=Established")
        namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": RELEASE_NS}}
        self.kubectl.apply([namespace], self.workdir, "namespace")  # helm --create-namespace
        self.kubectl.apply(rest, self.workdir, "release")
        self.rendered = rendered
        return rendered

    def pod_logs(self, namespace: str, pod: str) -> str:
        return str(self.kubelet.logs(namespace, pod))


class RealCluster(Platform):
    """KUBECONFIG's cluster; the chart installed with helm."""

    emulated = False

    def __init__(self, workdir: Path, kubeconfig: Path) -> None:
        self.workdir = workdir
        self.kubeconfig = kubeconfig
        self.kubectl = Kubectl(kubeconfig)
        self.helm = helm_binary()

    def install(self, values: dict[str, Any]) -> list[dict[str, Any]]:
        extra = os.environ.get("KUBETUNE_INSTALL_VALUES")
        if extra:
            values = merge(values, yaml.safe_load(Path(extra).read_text()) or {})
        path = self.workdir / "values.yaml"
        path.write_text(yaml.safe_dump(values))
        env = {**os.environ, "KUBECONFIG": str(self.kubeconfig)}
        args = [self.helm, "upgrade", "--install", RELEASE, str(CHART), "-n", RELEASE_NS]
        args += ["--create-namespace", "--wait", "--timeout", "5m", "-f", str(path)]
        done = subprocess.run(args, capture_output=True, text=True, env=env, timeout=400)
        if done.returncode != 0:
            raise AssertionError(f"helm install failed:\n{done.stderr}{done.stdout}")
        return render_chart(values, workdir=self.workdir)

    def uninstall(self) -> None:
        env = {**os.environ, "KUBECONFIG": str(self.kubeconfig)}
        subprocess.run(
            [self.helm, "uninstall", RELEASE, "-n", RELEASE_NS, "--wait"],
            capture_output=True,
            env=env,
            timeout=300,
            check=False,
        )

    def pod_logs(self, namespace: str, pod: str) -> str:
        return self.kubectl("-n", namespace, "logs", pod, check=False)


@contextlib.contextmanager
def emulated_cluster(workdir: Path, **kubelet_options: Any) -> Iterator[EmulatedCluster]:
    """The emulator over HTTPS with a token, its kubeconfig, and the kubelet stand-in."""
    from tests.emulator import start_emulator
    from tests.install.kubelet import Kubelet

    workdir.mkdir(parents=True, exist_ok=True)
    with start_emulator(tls=True, token=TOKEN) as emu:
        kubeconfig = emu.write_kubeconfig(workdir / "kubeconfig")
        kubelet = Kubelet(
            emu, workdir / "node", token=TOKEN, ca_file=emu.ca_file, **kubelet_options
        )
        kubelet.start()
        try:
            yield EmulatedCluster(emu, kubelet, workdir, Path(kubeconfig))
        finally:
            kubelet.stop()
        assert kubelet.errors == [], kubelet.errors


def real_cluster(workdir: Path) -> RealCluster:
    config = os.environ.get("KUBECONFIG")
    if not config:
        raise RuntimeError("KUBECONFIG is not set")
    workdir.mkdir(parents=True, exist_ok=True)
    return RealCluster(workdir, Path(config.split(os.pathsep)[0]))


def wait_until(what: str, check: Any, timeout: float, interval: float = 0.2) -> Any:
    """Poll ``check()`` until it returns something truthy; TimeoutError names ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(interval)
