"""The kubelet stand-in on its own: hand-written Jobs, Pods and Deployments that run
``python -c ...`` for real, in bubblewrap sandboxes."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.emulator import Emulator, start_emulator
from tests.install.images import VENV_BIN, ImageCatalog, repository_name
from tests.install.kubelet import (
    Kubelet,
    container_command,
    expand,
    fallback_message,
    field_value,
)
from tests.install.sandbox import Mount, SandboxSpec, canonical, run_once

NS = "default"
IMAGE = "ghcr.io/kubetune/workloads-cpu:0.1.0"


@pytest.fixture()
def emu() -> Iterator[Emulator]:
    with start_emulator() as emulator:
        yield emulator


@pytest.fixture()
def kubelet(emu: Emulator, tmp_path: Path) -> Iterator[Kubelet]:
    with Kubelet(emu, tmp_path / "node", job_backoff=0.1, restart_backoff=0.2) as stand_in:
        yield stand_in
        assert stand_in.errors == []


def job(name: str, code: str, **spec: Any) -> dict[str, Any]:
    pod_spec = spec.pop("pod", {})
    container = {
        "name": "step",
        "image": IMAGE,
        "command": ["python", "-c", code],
        **spec.pop("container", {}),
    }
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": NS, "labels": {"app": "t"}},
        "spec": {
            "backoffLimit": 0,
            **spec,
            "template": {
                "metadata": {"labels": {"app": "t"}},
                "spec": {"restartPolicy": "Never", "containers": [container], **pod_spec},
            },
        },
    }


def finished(emu: Emulator, name: str, timeout: float = 60) -> dict[str, Any]:
    def done(obj: dict[str, Any]) -> bool:
        conditions = (obj.get("status") or {}).get("conditions") or []
        return any(
            c["type"] in ("Complete", "Failed") and c["status"] == "True" for c in conditions
        )

    return emu.wait_for("jobs.batch", NS, name, done, timeout=timeout, interval=0.05)


def conditions(obj: dict[str, Any]) -> list[tuple[str, str, str]]:
    return [
        (c["type"], c["status"], c.get("reason", ""))
        for c in (obj.get("status") or {}).get("conditions") or []
    ]


def only_pod(emu: Emulator, job_name: str) -> dict[str, Any]:
    (pod,) = emu.objects("pods", NS, labels=f"batch.kubernetes.io/job-name={job_name}")
    return pod


# --- pure parts -----------------------------------------------------------------------------


def test_dockerfiles_give_entrypoint_env_and_user() -> None:
    catalog = ImageCatalog()
    operator = catalog.resolve("ghcr.io/kubetune/operator:0.1.0")
    assert operator.entrypoint == ("kubetune", "operator")
    assert (operator.uid, operator.gid) == (1000, 1000)
    cpu = catalog.resolve("registry.local:5000/team/workloads-cpu@sha256:abc")
    assert cpu.entrypoint == ("python", "-m", "kubetune_workloads")
    assert cpu.env["KUBETUNE_CACHE"] == "/var/cache/kubetune"
    cuda = catalog.resolve("kubetune/workloads-cuda")
    assert cuda.runtime_env()["PATH"].split(":")[0] == str(VENV_BIN)  # not /opt/venv/bin
    assert cuda.runtime_env()["VIRTUAL_ENV"] == str(VENV_BIN.parent)
    assert repository_name("a/b/c:1@sha256:x") == "c"


def test_command_args_and_variable_expansion() -> None:
    image = ImageCatalog().resolve(IMAGE)
    env = {"STEP": "dataprep", "RANK": "3"}
    assert container_command({}, image, env) == ["python", "-m", "kubetune_workloads"]
    assert container_command({"args": ["$(STEP)", "--spec", "x"]}, image, env) == [
        "python",
        "-m",
        "kubetune_workloads",
        "dataprep",
        "--spec",
        "x",
    ]
    assert container_command(
        {"command": ["torchrun", "--node-rank=$(RANK)", "$$(RANK)", "$(NOPE)"]}, image, env
    ) == ["torchrun", "--node-rank=3", "$(RANK)", "$(NOPE)"]
    assert expand("a$(STEP)b", env) == "adataprepb"


def test_downward_api_and_fallback_message() -> None:
    pod = {
        "metadata": {"name": "p", "namespace": "ns", "uid": "u", "annotations": {"a/b": "1"}},
        "spec": {"nodeName": "n"},
        "status": {"podIP": "10.0.0.1"},
    }
    assert field_value(pod, "metadata.annotations['a/b']") == "1"
    assert field_value(pod, "status.podIP") == "10.0.0.1"
    assert field_value(pod, "spec.serviceAccountName") == "default"
    lines = "".join(f"line {i}\n" for i in range(200))
    tail = fallback_message(lines)
    assert tail.endswith("line 199\n") and len(tail.splitlines()) == 80
    assert len(fallback_message("x" * 5000).encode()) == 2048


def test_container_paths_are_real_in_the_sandbox(tmp_path: Path) -> None:
    """Volumes appear at their mount paths, the root is read-only, /tmp is a volume."""
    spec_dir = tmp_path / "spec"
    spec_dir.mkdir()
    (spec_dir / "spec.json").write_text('{"step": "x"}')
    data, scratch = tmp_path / "pvc", tmp_path / "tmp"
    data.mkdir()
    scratch.mkdir()
    code = (
        "import os, pathlib\n"
        "print(open('/etc/kubetune/spec.json').read(), os.getuid(), os.getgid())\n"
        "pathlib.Path('/mnt/pvc/data/out.txt').write_text('written in the pod')\n"
        "pathlib.Path('/tmp/scratch').write_text('x')\n"
        "for path in ('/usr/evil', '/etc/evil', '/mnt/evil'):\n"
        "    try:\n"
        "        open(path, 'w')\n"
        "    except OSError as e:\n"
        "        print('refused', path, e.errno)\n"
        "print('hosts', os.path.exists('/etc/hosts'), 'home', os.listdir('/home'))\n"
    )
    image = ImageCatalog().resolve(IMAGE)
    exit_code, output = run_once(
        SandboxSpec(
            argv=["python", "-c", code],
            env=image.runtime_env(),
            mounts=[
                Mount("/etc/kubetune", spec_dir, True),
                Mount("/mnt/pvc/data", data),
                Mount("/tmp", scratch),
            ],
            read_only_root=True,
            uid=1000,
            gid=1000,
        )
    )
    assert exit_code == 0, output
    assert '{"step": "x"} 1000 1000' in output
    assert (data / "out.txt").read_text() == "written in the pod"
    assert (scratch / "scratch").read_text() == "x"
    for path in ("/usr/evil", "/etc/evil", "/mnt/evil"):
        assert f"refused {path} 30" in output  # EROFS
    assert "hosts True home []" in output
    assert canonical("/var/run/secrets/x") in ("/run/secrets/x", "/var/run/secrets/x")


# --- Jobs -----------------------------------------------------------------------------------


def test_a_job_runs_its_container_and_reports_like_the_job_controller(
    emu: Emulator, kubelet: Kubelet
) -> None:
    emu.create(
        "configmaps",
        {
            "metadata": {"name": "spec-cm", "namespace": NS},
            "data": {"spec.json": '{"n": 2}', "other": "ignored"},
        },
    )
    emu.create(
        "secrets",
        {"metadata": {"name": "creds", "namespace": NS}, "data": {"token": "czNjcjN0"}},
    )
    emu.create("persistentvolumeclaims", {"metadata": {"name": "data", "namespace": NS}})
    code = (
        "import json, os, pathlib\n"
        "spec = json.load(open('/etc/kubetune/spec.json'))\n"
        "assert sorted(os.listdir('/etc/kubetune')) == ['spec.json'], os.listdir('/etc/kubetune')\n"
        "pathlib.Path('/mnt/pvc/data/first.txt').write_text(str(spec['n'] * 21))\n"
        "env = {k: os.environ.get(k) for k in ('POD', 'TOKEN', 'GREETING', 'HOSTNAME', 'HOME')}\n"
        "print('env', json.dumps(env, sort_keys=True))\n"
        "open(os.environ['KUBETUNE_TERMINATION_LOG'], 'w').write(json.dumps({'ok': True}))\n"
    )
    manifest = job(
        "first",
        code,
        container={
            "env": [
                {"name": "KUBETUNE_TERMINATION_LOG", "value": "/dev/termination-log"},
                {"name": "NAME", "value": "world"},
                {"name": "GREETING", "value": "hello $(NAME)"},
                {"name": "HOME", "value": "/tmp"},
                {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                {
                    "name": "TOKEN",
                    "valueFrom": {"secretKeyRef": {"name": "creds", "key": "token"}},
                },
            ],
            "volumeMounts": [
                {"name": "spec", "mountPath": "/etc/kubetune", "readOnly": True},
                {"name": "tmp", "mountPath": "/tmp"},
                {"name": "data", "mountPath": "/mnt/pvc/data"},
            ],
            "terminationMessagePath": "/dev/termination-log",
            "terminationMessagePolicy": "FallbackToLogsOnError",
            "securityContext": {"readOnlyRootFilesystem": True, "runAsNonRoot": True},
        },
        pod={
            "automountServiceAccountToken": False,
            "securityContext": {"runAsUser": 1000, "runAsGroup": 1000},
            "volumes": [
                {
                    "name": "spec",
                    "configMap": {
                        "name": "spec-cm",
                        "items": [{"key": "spec.json", "path": "spec.json"}],
                    },
                },
                {"name": "tmp", "emptyDir": {}},
                {"name": "data", "persistentVolumeClaim": {"claimName": "data"}},
            ],
        },
    )
    emu.create("jobs.batch", manifest)
    done = finished(emu, "first")
    status = done["status"]
    assert conditions(done) == [
        ("SuccessCriteriaMet", "True", "CompletionsReached"),
        ("Complete", "True", "CompletionsReached"),
    ]
    assert status["succeeded"] == 1 and not status.get("failed") and not status.get("active")
    assert status["startTime"] and status["completionTime"]

    pod = only_pod(emu, "first")
    labels = pod["metadata"]["labels"]
    uid = done["metadata"]["uid"]
    assert labels["job-name"] == labels["batch.kubernetes.io/job-name"] == "first"
    assert labels["batch.kubernetes.io/controller-uid"] == labels["controller-uid"] == uid
    assert labels["app"] == "t"
    (owner,) = pod["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["uid"], owner["controller"]) == ("Job", uid, True)
    assert pod["status"]["phase"] == "Succeeded"
    (container,) = pod["status"]["containerStatuses"]
    terminated = container["state"]["terminated"]
    assert (terminated["exitCode"], terminated["reason"]) == (0, "Completed")
    assert json.loads(terminated["message"]) == {"ok": True}

    output = kubelet.logs(NS, pod["metadata"]["name"])
    env = json.loads(output.split("env ", 1)[1].splitlines()[0])
    assert env == {
        "GREETING": "hello world",
        "HOME": "/tmp",
        "HOSTNAME": pod["metadata"]["name"],
        "POD": pod["metadata"]["name"],
        "TOKEN": "s3cr3t",
    }
    assert (kubelet.claim_dir(NS, "data") / "first.txt").read_text() == "42"
    pvc = emu.get("persistentvolumeclaims", NS, "data") or {}
    assert pvc["status"]["phase"] == "Bound"

    # a later pod sees the earlier pod's outputs on the same claim
    second = job(
        "second",
        "print(open('/data/first.txt').read())",
        container={"volumeMounts": [{"name": "d", "mountPath": "/data", "readOnly": True}]},
        pod={"volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": "data"}}]},
    )
    emu.create("jobs.batch", second)
    finished(emu, "second")
    assert kubelet.logs(NS, only_pod(emu, "second")["metadata"]["name"]).strip() == "42"
    reasons = [e["reason"] for e in emu.objects("events", NS)]
    for reason in ("SuccessfulCreate", "Scheduled", "Started", "Completed"):
        assert reason in reasons


def test_failures_follow_backoff_limit_and_pod_failure_policy(
    emu: Emulator, kubelet: Kubelet
) -> None:
    # exit 1 is retried: 3 pods fail with backoffLimit 2, the last log is the message
    emu.create(
        "jobs.batch",
        job(
            "flaky",
            "import sys; print('it broke'); sys.exit(1)",
            backoffLimit=2,
            container={"terminationMessagePolicy": "FallbackToLogsOnError"},
        ),
    )
    # exit 2 matches a FailJob rule: one pod, the Job fails at once
    policy = {
        "rules": [
            {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]},
            {
                "action": "FailJob",
                "onExitCodes": {"containerName": "step", "operator": "In", "values": [2]},
            },
        ]
    }
    emu.create(
        "jobs.batch",
        job(
            "invalid",
            "import sys; open('/dev/termination-log','w').write('bad input'); sys.exit(2)",
            backoffLimit=5,
            podFailurePolicy=policy,
            container={"terminationMessagePath": "/dev/termination-log"},
        ),
    )
    flaky = finished(emu, "flaky")
    assert conditions(flaky) == [
        ("FailureTarget", "True", "BackoffLimitExceeded"),
        ("Failed", "True", "BackoffLimitExceeded"),
    ]
    assert flaky["status"]["failed"] == 3
    pods = emu.objects("pods", NS, labels="job-name=flaky")
    assert len(pods) == 3
    for pod in pods:
        terminated = pod["status"]["containerStatuses"][0]["state"]["terminated"]
        assert (terminated["exitCode"], terminated["reason"]) == (1, "Error")
        assert terminated["message"] == "it broke\n"  # FallbackToLogsOnError

    invalid = finished(emu, "invalid")
    assert conditions(invalid)[-1][:3] == ("Failed", "True", "PodFailurePolicy")
    assert (
        "exit code 2 matching FailJob rule at index 1"
        in invalid["status"]["conditions"][0]["message"]
    )
    pod = only_pod(emu, "invalid")
    terminated = pod["status"]["containerStatuses"][0]["state"]["terminated"]
    assert (terminated["exitCode"], terminated["message"]) == (2, "bad input")


def test_unknown_image_missing_claim_and_deadline(emu: Emulator, kubelet: Kubelet) -> None:
    emu.create("jobs.batch", job("no-image", "pass", container={"image": "example.com/nope:1"}))
    emu.create(
        "jobs.batch",
        job(
            "no-claim",
            "pass",
            container={"volumeMounts": [{"name": "d", "mountPath": "/d"}]},
            pod={"volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": "absent"}}]},
        ),
    )
    emu.create("jobs.batch", job("slow", "import time; time.sleep(60)", activeDeadlineSeconds=2))

    def waiting(name: str, reason: str) -> dict[str, Any]:
        def check(pod: dict[str, Any]) -> bool:
            statuses = (pod.get("status") or {}).get("containerStatuses") or [{}]
            conds = (pod.get("status") or {}).get("conditions") or []
            return (statuses[0].get("state") or {}).get("waiting", {}).get(
                "reason"
            ) == reason or any(c.get("reason") == reason for c in conds)

        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            pods = emu.objects("pods", NS, labels=f"job-name={name}")
            if pods and check(pods[0]):
                return pods[0]
            time.sleep(0.05)
        raise AssertionError(f"{name}: no {reason}: {emu.objects('pods', NS)}")

    pulled = waiting("no-image", "ErrImagePull")
    assert "no images/*.Dockerfile builds 'nope'" in json.dumps(pulled["status"])
    unscheduled = waiting("no-claim", "Unschedulable")
    assert 'persistentvolumeclaim \\"absent\\" not found' in json.dumps(unscheduled["status"])
    slow_pod = waiting_for_pod(emu, "slow")
    slow = finished(emu, "slow", timeout=30)
    assert conditions(slow)[-1][:3] == ("Failed", "True", "DeadlineExceeded")
    # Failed is written once the pod has terminated: its processes are gone, the pod too
    assert all(s.poll() is not None for s in kubelet.runtime(NS, slow_pod).sandboxes())
    emu.wait_for_absence("pods", NS, slow_pod, timeout=5)


def waiting_for_pod(emu: Emulator, job_name: str, timeout: float = 30) -> str:
    """The name of the Job's pod once the stand-in created it (slow on a loaded machine)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pods = emu.objects("pods", NS, labels=f"job-name={job_name}")
        if pods:
            return str(pods[0]["metadata"]["name"])
        time.sleep(0.05)
    raise AssertionError(f"no pod for Job {job_name} within {timeout}s")


def test_suspended_jobs_wait(emu: Emulator, kubelet: Kubelet) -> None:
    emu.create("jobs.batch", job("held", "print('ran')", suspend=True))
    emu.wait_for(
        "jobs.batch",
        NS,
        "held",
        lambda j: ("Suspended", "True", "JobSuspended") in conditions(j),
        timeout=10,
    )
    time.sleep(0.5)
    assert emu.objects("pods", NS) == []
    emu.patch("jobs.batch", NS, "held", {"spec": {"suspend": False}})
    done = finished(emu, "held")
    assert ("Suspended", "False", "JobResumed") in conditions(done)
    assert ("Complete", "True", "CompletionsReached") in conditions(done)


# --- Deployments and probes -----------------------------------------------------------------


SERVER = (
    "import http.server, os\n"
    "class H(http.server.BaseHTTPRequestHandler):\n"
    "    def do_GET(self):\n"
    "        self.send_response(200); self.end_headers()\n"
    "        self.wfile.write(os.environ['HOSTNAME'].encode())\n"
    "    def log_message(self, *a): pass\n"
    "http.server.HTTPServer(('0.0.0.0', 8081), H).serve_forever()\n"
)


def test_deployment_replicas_get_probed_and_restart_when_killed(
    emu: Emulator, kubelet: Kubelet
) -> None:
    """Two replicas serve the same port (each pod has its own network), the readiness probe
    makes them Ready, and a SIGKILLed container is restarted in the same pod."""
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": NS},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "automountServiceAccountToken": False,
                    "containers": [
                        {
                            "name": "web",
                            "image": IMAGE,
                            "command": ["python", "-c", SERVER],
                            "ports": [{"name": "health", "containerPort": 8081}],
                            "readinessProbe": {
                                "httpGet": {"path": "/healthz", "port": "health"},
                                "periodSeconds": 1,
                            },
                        }
                    ],
                },
            },
        },
    }
    emu.create("deployments.apps", deployment)
    emu.wait_for(
        "deployments.apps",
        NS,
        "web",
        lambda d: (d.get("status") or {}).get("availableReplicas") == 2,
        timeout=30,
    )
    pods = emu.objects("pods", NS, labels="app=web")
    assert len(pods) == 2
    names = sorted(p["metadata"]["name"] for p in pods)
    for name in names:
        status, body = kubelet.http_get(NS, name, 8081, "/")
        assert (status, body.decode()) == (200, name)
    victim = names[0]
    kubelet.kill(NS, victim)

    def restarted(pod: dict[str, Any]) -> bool:
        (status,) = pod["status"]["containerStatuses"]
        return status["restartCount"] == 1 and "running" in status["state"] and status["ready"]

    pod = emu.wait_for("pods", NS, victim, restarted, timeout=30)
    last = pod["status"]["containerStatuses"][0]["lastState"]["terminated"]
    assert (last["exitCode"], last["reason"]) == (137, "Error")
    assert len(emu.objects("pods", NS, labels="app=web")) == 2

    emu.delete("deployments.apps", NS, "web")  # the pods go by garbage collection
    deadline = time.monotonic() + 20
    while kubelet.running_processes() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert kubelet.running_processes() == 0


def test_stopping_the_kubelet_kills_every_container(emu: Emulator, tmp_path: Path) -> None:
    stand_in = Kubelet(emu, tmp_path / "node")
    stand_in.start()
    emu.create("jobs.batch", job("forever", "import time; time.sleep(600)"))
    deadline = time.monotonic() + 20
    while stand_in.running_processes() < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert stand_in.running_processes() == 2  # the pod's pause process and its container
    runtime = stand_in.runtime(NS, only_pod(emu, "forever")["metadata"]["name"])
    sandboxes = runtime.sandboxes()
    started = time.monotonic()
    stand_in.stop()
    assert time.monotonic() - started < 15
    assert all(s.poll() is not None for s in sandboxes)
    assert stand_in.running_processes() == 0


def test_containers_of_a_pod_share_localhost(emu: Emulator, kubelet: Kubelet) -> None:
    """A sidecar reaches the main container on 127.0.0.1, as in a pod (one network)."""
    serve_once = (
        "import http.server\n"
        "class H(http.server.BaseHTTPRequestHandler):\n"
        "    def do_GET(self):\n"
        "        self.send_response(200); self.end_headers(); self.wfile.write(b'from main')\n"
        "http.server.HTTPServer(('127.0.0.1', 8080), H).handle_request()\n"
    )
    fetch = (
        "import time, urllib.request\n"
        "for _ in range(100):\n"
        "    try:\n"
        "        print(urllib.request.urlopen('http://127.0.0.1:8080/').read().decode()); break\n"
        "    except OSError:\n"
        "        time.sleep(0.1)\n"
    )
    manifest = job("pair", serve_once)
    manifest["spec"]["template"]["spec"]["containers"].append(
        {"name": "sidecar", "image": IMAGE, "command": ["python", "-c", fetch]}
    )
    emu.create("jobs.batch", manifest)
    done = finished(emu, "pair")
    assert ("Complete", "True", "CompletionsReached") in conditions(done)
    pod = only_pod(emu, "pair")
    assert [s["name"] for s in pod["status"]["containerStatuses"]] == ["step", "sidecar"]
    assert kubelet.logs(NS, pod["metadata"]["name"], "sidecar").strip() == "from main"
