"""`kubetune operator` as a user starts it: where credentials come from, what it says when they
do not work, and leader election on a Lease in the API emulator.

The operator runs as the real console script in a separate process; nothing supplies it
credentials but a kubeconfig file or the environment, as in a cluster.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubetune.controllers.credentials import KubeAccess, LoginFailed, load
from kubetune.controllers.kube import Api
from kubetune.controllers.leader import LeaderElector, LeaseConfig

from tests.emulator import Emulator, start_emulator
from tests.integration.conftest import load_crds

KUBETUNE = shutil.which("kubetune", path=str(Path(sys.executable).parent)) or "kubetune"
LEASES = "leases.coordination.k8s.io"


def clean_env(home: Path, **extra: str) -> dict[str, str]:
    """The environment of a user with no cluster configured (plus ``extra``)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("KUBECONFIG", "KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT")
    }
    env.update(HOME=str(home), **extra)
    return env


def operator(
    args: list[str], env: dict[str, str], timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [KUBETUNE, "operator", "--liveness", "", "--metrics-port", "0", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def one_line(done: subprocess.CompletedProcess[str]) -> str:
    """stderr must be one line, with no traceback."""
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert "Traceback" not in done.stderr, done.stderr
    assert len(lines) == 1, done.stderr
    return lines[0]


def kubeconfig(path: Path, server: str, contexts: dict[str, str] | None = None) -> Path:
    """A kubeconfig with one cluster per context (``{context: server}``)."""
    contexts = contexts or {"main": server}
    clusters = "".join(f"- name: {c}\n  cluster:\n    server: {s}\n" for c, s in contexts.items())
    ctxs = "".join(
        f"- name: {c}\n  context:\n    cluster: {c}\n    user: u\n    namespace: ns-{c}\n"
        for c in contexts
    )
    path.write_text(
        "apiVersion: v1\nkind: Config\n"
        f"current-context: {next(iter(contexts))}\n"
        f"clusters:\n{clusters}users:\n- name: u\n  user: {{}}\ncontexts:\n{ctxs}"
    )
    return path


def test_no_credentials_says_what_was_tried_and_exits_2(tmp_path: Path) -> None:
    done = operator([], clean_env(tmp_path))
    assert done.returncode == 2
    line = one_line(done)
    assert "no Kubernetes credentials" in line
    assert "in-cluster service account: KUBERNETES_SERVICE_HOST is not set" in line
    assert "kubeconfig ~/.kube/config: no such file" in line


def test_a_kubeconfig_flag_that_does_not_exist_is_named(tmp_path: Path) -> None:
    done = operator(["--kubeconfig", str(tmp_path / "nope")], clean_env(tmp_path))
    assert done.returncode == 2
    assert f"kubeconfig {tmp_path / 'nope'}: no such file" in one_line(done)


def test_a_dead_server_is_one_line_and_exit_1(tmp_path: Path) -> None:
    config = kubeconfig(tmp_path / "config", "http://127.0.0.1:9")
    done = operator([], clean_env(tmp_path, KUBECONFIG=str(config)))
    assert done.returncode == 1
    line = one_line(done)
    assert "cannot reach the Kubernetes API server at http://127.0.0.1:9" in line
    assert "Connection refused" in line


def test_missing_crds_are_named(tmp_path: Path) -> None:
    with start_emulator([]) as emu:
        config = kubeconfig(tmp_path / "config", emu.url)
        done = operator(["--kubeconfig", str(config)], clean_env(tmp_path))
    assert done.returncode == 1
    assert "does not serve kubetune.dev/v1alpha1: install kubetune's CRDs" in one_line(done)


def test_context_flag_picks_the_cluster_and_an_unknown_context_is_refused(tmp_path: Path) -> None:
    with start_emulator(load_crds()) as emu:
        config = kubeconfig(
            tmp_path / "config", "", {"dead": "http://127.0.0.1:9", "live": emu.url}
        )
        login = load(KubeAccess(kubeconfig=str(config), context="live"))
        assert login.configuration.host == emu.url
        assert login.namespace == "ns-live"
        assert "context live" in login.source
        with pytest.raises(LoginFailed, match="nowhere"):
            load(KubeAccess(kubeconfig=str(config), context="nowhere"))
        done = operator(["--context", "nowhere"], clean_env(tmp_path, KUBECONFIG=str(config)))
    assert done.returncode == 2
    assert "nowhere" in one_line(done)


def test_kubeconfig_env_is_used_when_not_in_a_pod(tmp_path: Path) -> None:
    with start_emulator(load_crds()) as emu:
        config = kubeconfig(tmp_path / "config", emu.url)
        env = {"KUBECONFIG": str(config)}
        login = load(KubeAccess(environ=env))
        assert login.configuration.host == emu.url
        in_pod = {**env, "KUBERNETES_SERVICE_HOST": "127.0.0.1", "KUBERNETES_SERVICE_PORT": "1"}
        if not Path("/var/run/secrets/kubernetes.io/serviceaccount/token").exists():
            # In a "pod" without a token the in-cluster source fails and the kubeconfig is used.
            assert load(KubeAccess(environ=in_pod)).configuration.host == emu.url


# --- Leader election ----------------------------------------------------------------------------


@pytest.fixture()
def lease_emulator(tmp_path: Path) -> Iterator[tuple[Emulator, KubeAccess]]:
    with start_emulator(load_crds()) as emu:
        yield emu, KubeAccess(kubeconfig=str(emu.write_kubeconfig(tmp_path / "kubeconfig")))


def elector(access: KubeAccess, identity: str, **timing: float) -> LeaderElector:
    settings = {"lease_duration": 1.5, "renew_deadline": 1.0, "retry_period": 0.2, **timing}
    api = Api(access, retry_delays=(0.1,), timeout=(2.0, 2.0))
    return LeaderElector(api, LeaseConfig(namespace="default", identity=identity, **settings))


def test_one_leader_takes_over_after_the_lease_expires(
    lease_emulator: tuple[Emulator, KubeAccess],
) -> None:
    emu, access = lease_emulator
    first, second = elector(access, "a"), elector(access, "b")
    assert first.try_acquire_or_renew()
    assert not second.try_acquire_or_renew()
    lease = emu.get(LEASES, "default", "kubetune-operator")
    assert lease is not None and lease["spec"]["holderIdentity"] == "a"
    assert lease["spec"]["leaseDurationSeconds"] == 1
    assert first.try_acquire_or_renew()  # renewal keeps it
    # "a" dies without releasing: "b" waits a whole lease duration from when it saw the record.
    started = time.monotonic()
    stop = threading.Event()
    assert second.acquire(stop)
    waited = time.monotonic() - started
    assert 1.0 <= waited < 5.0
    lease = emu.get(LEASES, "default", "kubetune-operator")
    assert lease is not None
    assert lease["spec"]["holderIdentity"] == "b" and lease["spec"]["leaseTransitions"] == 1
    # The old leader's next renewal fails: it sees another holder.
    assert not first.try_acquire_or_renew()


def test_a_released_lease_is_taken_at_once(lease_emulator: tuple[Emulator, KubeAccess]) -> None:
    _, access = lease_emulator
    first, second = elector(access, "a", lease_duration=30, renew_deadline=20), elector(access, "b")
    assert first.try_acquire_or_renew()
    assert not second.try_acquire_or_renew()
    first.release()
    assert second.try_acquire_or_renew()


def test_of_many_candidates_exactly_one_wins(lease_emulator: tuple[Emulator, KubeAccess]) -> None:
    _, access = lease_emulator
    candidates = [elector(access, f"c{i}", lease_duration=30, renew_deadline=20) for i in range(6)]
    results: list[bool] = []
    barrier = threading.Barrier(len(candidates))

    def attempt(candidate: LeaderElector) -> None:
        barrier.wait()
        results.append(candidate.try_acquire_or_renew())

    threads = [threading.Thread(target=attempt, args=(c,)) for c in candidates]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(results) == [False] * 5 + [True]


def test_a_leader_that_cannot_renew_gives_up_within_the_deadline(
    lease_emulator: tuple[Emulator, KubeAccess],
) -> None:
    emu, access = lease_emulator
    leader = elector(access, "a")
    assert leader.acquire(threading.Event())
    lost: list[str] = []
    done = threading.Event()
    leader.keep(lambda why: (lost.append(why), done.set()))
    time.sleep(0.5)
    assert not lost  # renewing fine
    emu.faults.server_error(resource=LEASES, count=1000)
    assert done.wait(timeout=10)
    assert "could not renew Lease kubetune-operator" in lost[0]


def test_leader_election_timing_is_checked() -> None:
    with pytest.raises(ValueError, match="lease duration > renew deadline > retry period"):
        LeaseConfig(namespace="default", identity="a", lease_duration=5, renew_deadline=5)


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _get(url: str) -> str | None:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return str(response.read().decode())
    except (urllib.error.URLError, OSError):
        return None


def test_two_replicas_one_leads_and_both_serve_health_and_metrics(
    lease_emulator: tuple[Emulator, KubeAccess], tmp_path: Path
) -> None:
    emu, access = lease_emulator
    ports = {name: (_free_port(), _free_port()) for name in ("pod-a", "pod-b")}
    procs = {}
    for name, (metrics_port, health_port) in ports.items():
        args = [
            KUBETUNE, "operator", "--kubeconfig", str(access.kubeconfig), "--leader-elect",
            "--leader-election-namespace", "default", "--metrics-port", str(metrics_port),
            "--liveness", f"http://127.0.0.1:{health_port}/healthz", "--lease-duration", "4",
            "--renew-deadline", "3", "--retry-period", "0.5",
        ]  # fmt: skip
        env = clean_env(tmp_path, POD_NAME=name)
        procs[name] = subprocess.Popen(
            args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        if name == "pod-a":  # a leads: b starts once a holds the Lease
            emu.wait_for(LEASES, "default", "kubetune-operator", timeout=30)
    try:
        leaders: dict[str, str] = {}
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len(leaders) < 2:
            for name, (metrics_port, health_port) in ports.items():
                text = _get(f"http://127.0.0.1:{metrics_port}/metrics")
                healthy = _get(f"http://127.0.0.1:{health_port}/healthz") is not None
                line = next(
                    (x for x in (text or "").splitlines() if x.startswith("kubetune_leader ")), None
                )
                if line and healthy:
                    leaders[name] = line.split()[1]
            time.sleep(0.3)
        assert leaders == {"pod-a": "1.0", "pod-b": "0.0"}
        lease = emu.get(LEASES, "default", "kubetune-operator")
        assert lease is not None and lease["spec"]["holderIdentity"] == "pod-a"
        # SIGTERM: the leader releases the Lease and the standby takes over within a retry period.
        procs["pod-a"].terminate()
        procs["pod-a"].wait(timeout=30)
        emu.wait_for(
            LEASES, "default", "kubetune-operator",
            lambda lease: lease["spec"].get("holderIdentity") == "pod-b", timeout=10,
        )  # fmt: skip
    finally:
        for proc in procs.values():
            proc.kill()
            proc.wait(timeout=30)
