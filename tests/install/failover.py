"""The HA scenario of test_ha.py, runnable in a background thread.

Two replicas of the chart's operator (``replicas: 2``, leader election on) with the exact args
of the rendered Deployment and distinct ``POD_NAME``/``HOSTNAME``, each with only a kubeconfig,
against a fresh emulator where the chart's CRDs, namespace, ServiceAccount and RBAC were applied
with kubectl. Exactly one acts; SIGKILL the leader, the other takes over. The failover time --
from the SIGKILL until the new leader has created the Job of a Dataset applied right after the
kill -- is measured five times with the chart's default Lease timings.

It is nearly all waiting (for a Lease to expire), so :class:`Background` runs it while the
CPU-bound pipeline tests run: conftest starts it with the session when test_ha is selected.
"""

from __future__ import annotations

import json
import os
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.install.installed import install_values
from tests.install.operator_proc import OperatorProcess, deployment_command
from tests.install.platform import (
    RELEASE,
    RELEASE_NS,
    EmulatedCluster,
    Platform,
    emulated_cluster,
    ha_values,
    merge,
    one,
)

API = "kubetune.dev/v1alpha1"
NS = "ha"
FAILOVERS = 5
LEASE = "kubetune-operator"


class Stopped(Exception):
    """The session ended before the scenario did."""


def dataset(name: str) -> dict[str, Any]:
    return {
        "apiVersion": API,
        "kind": "Dataset",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"sources": [{"uri": "pvc://data/tickets.jsonl"}], "schema": "instruction"},
    }


def holder(platform: Platform) -> str:
    lease = platform.kubectl.get("leases.coordination.k8s.io", LEASE, RELEASE_NS) or {}
    return str((lease.get("spec") or {}).get("holderIdentity") or "")


def job_exists(platform: Platform, name: str) -> Callable[[], bool]:
    def check() -> bool:
        return platform.kubectl.get("jobs", f"{name}-dataprep-g1", NS) is not None

    return check


@dataclass
class Result:
    times: list[float] = field(default_factory=list)
    leaders: list[str] = field(default_factory=list)
    logs: dict[str, str] = field(default_factory=dict)
    jobs: list[str] = field(default_factory=list)
    first_job_by: str = ""
    standby_acted: bool = False
    error: BaseException | None = None
    done: threading.Event = field(default_factory=threading.Event)

    @property
    def median(self) -> float:
        return float(statistics.median(self.times))

    def write(self, directory: Path) -> list[Path]:
        report = {
            "failover_seconds": [round(t, 2) for t in self.times],
            "median": round(self.median, 2),
            "leaders": self.leaders,
        }
        targets = [directory / "failover.json"]
        if os.environ.get("KUBETUNE_INSTALL_REPORT_DIR"):
            targets.append(Path(os.environ["KUBETUNE_INSTALL_REPORT_DIR"]) / "failover.json")
        for path in targets:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(report, indent=2))
        return targets


def run(workdir: Path, stop: threading.Event, result: Result, entered: threading.Event) -> None:
    """The scenario (see the module docstring) into ``result`` (``result.error`` on failure,
    ``result.done`` set either way).

    The emulator is left only once ``stop`` is set: kmock patches aiohttp's resolver for each
    server, so servers must stop in the reverse order of their start, and this one starts
    before the session's emulator (``entered`` is set then) and stops after it.
    """

    def wait(what: str, check: Callable[[], Any], timeout: float, interval: float = 0.1) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            value = check()
            if value:
                return value
            if stop.is_set():
                raise Stopped(what)
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out after {timeout:g}s waiting for {what}")
            time.sleep(interval)

    try:
        with emulated_cluster(workdir / "cluster") as platform:
            entered.set()
            try:
                _scenario(platform, workdir, result, wait)
            except BaseException as exc:  # handed to the test
                result.error = exc
            finally:
                result.done.set()
                stop.wait()
    except BaseException as exc:
        result.error = result.error or exc
    finally:
        entered.set()
        result.done.set()


def _scenario(
    platform: EmulatedCluster, workdir: Path, result: Result, wait: Callable[..., Any]
) -> None:
    values = merge(install_values(), ha_values(2))
    platform.install(values, skip_kinds=("Deployment",))
    rendered = platform.rendered
    assert one(rendered, "Deployment", RELEASE)["spec"]["replicas"] == 2
    port = int(platform.emu.url.rsplit(":", 1)[1])
    home = workdir / "home"
    home.mkdir(exist_ok=True)
    replicas: dict[str, OperatorProcess] = {}
    for suffix in ("x7k2p", "q9d4m"):  # as the Deployment names its pods
        pod = f"{RELEASE}-6f7c9d8b5-{suffix}"
        argv, env = deployment_command(rendered, pod, RELEASE_NS)
        assert "--leader-elect" in argv, argv
        env |= {"KUBECONFIG": str(platform.kubeconfig), "HOME": str(home)}
        replicas[pod] = OperatorProcess(argv, env, workdir, port, name=pod)
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}}
    platform.kubectl.apply([namespace], platform.workdir, "namespace-ha")
    try:
        for replica in replicas.values():
            replica.start()
        for replica in replicas.values():
            replica.wait_healthy(90)  # a standby answers the liveness probe too

        def leader_pod() -> str:
            identity = holder(platform)
            return next((p for p in replicas if identity.startswith(p)), "")

        leader = wait("a leader", leader_pod, 60)
        result.leaders.append(leader)
        platform.kubectl.apply([dataset("ha-0")], platform.workdir, "ha-0")
        wait("the leader's first Job", job_exists(platform, "ha-0"), 60)
        created = "created batch/v1 Job"
        result.first_job_by = next(p for p, r in replicas.items() if created in r.logs())
        result.standby_acted = any(created in r.logs() for p, r in replicas.items() if p != leader)
        for i in range(1, FAILOVERS + 1):
            standby = next(p for p in replicas if p != leader)
            killed = time.monotonic()
            replicas[leader].kill()
            platform.kubectl.apply([dataset(f"ha-{i}")], platform.workdir, f"ha-{i}")
            wait(f"failover {i}", job_exists(platform, f"ha-{i}"), 90)
            result.times.append(time.monotonic() - killed)
            identity = holder(platform)
            if not identity.startswith(standby):
                raise AssertionError(f"failover {i}: {identity} holds the Lease, not {standby}")
            result.leaders.append(standby)
            replicas[leader].start()  # the killed replica's pod restarts: a standby now
            replicas[leader].wait_healthy(90)
            leader = standby
        items = platform.kubectl.json("get", "jobs", "-n", NS)["items"]
        result.jobs = sorted(j["metadata"]["name"] for j in items)
    finally:
        for name, replica in replicas.items():
            result.logs[name] = replica.logs()
            replica.close()


class Background:
    """:func:`run` in a thread; :meth:`result` waits for the scenario (re-raising its failure),
    :meth:`close` lets the thread stop its emulator (at the end of the session)."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.stop = threading.Event()
        self._result = Result()
        self._entered = threading.Event()
        self._thread = threading.Thread(
            target=run,
            args=(workdir, self.stop, self._result, self._entered),
            name="ha-failover",
            daemon=True,
        )

    def start(self) -> Background:
        """Start the scenario; return once its emulator runs."""
        self._thread.start()
        self._entered.wait(120)
        return self

    def result(self, timeout: float) -> Result:
        if not self._result.done.wait(timeout):
            raise TimeoutError(f"the failover scenario did not finish in {timeout:g}s")
        if self._result.error is not None:
            raise self._result.error
        return self._result

    def close(self) -> None:
        self.stop.set()
        self._thread.join(120)
