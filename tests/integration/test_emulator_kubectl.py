"""
The real ``kubectl`` against the API emulator: discovery, OpenAPI v3 (server-side field
validation), client-side and server-side apply, server-side printing with the CRDs' printer
columns, ``wait``, ``describe`` with Events, ``delete``, and TLS with a bearer token.

Skipped where there is no kubectl on the PATH. One emulator serves the module (the CRDs are
applied with kubectl itself); every test uses its own object names.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.emulator import Emulator, start_emulator

ROOT = Path(__file__).resolve().parents[2]
KUBECTL = shutil.which("kubectl")
NS = "ml-team"
FINETUNEJOBS = "finetunejobs.kubetune.dev"

pytestmark = pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed")

BUILTINS = textwrap.dedent(
    """\
    apiVersion: v1
    kind: ServiceAccount
    metadata: {name: kubetune, namespace: ml-team}
    ---
    apiVersion: rbac.authorization.k8s.io/v1
    kind: ClusterRole
    metadata: {name: kubetune}
    rules:
    - {apiGroups: [kubetune.dev], resources: ["*"], verbs: [get, list, watch, patch]}
    ---
    apiVersion: rbac.authorization.k8s.io/v1
    kind: ClusterRoleBinding
    metadata: {name: kubetune}
    roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: kubetune}
    subjects: [{kind: ServiceAccount, name: kubetune, namespace: ml-team}]
    ---
    apiVersion: rbac.authorization.k8s.io/v1
    kind: Role
    metadata: {name: leases, namespace: ml-team}
    rules: [{apiGroups: [coordination.k8s.io], resources: [leases], verbs: ["*"]}]
    ---
    apiVersion: rbac.authorization.k8s.io/v1
    kind: RoleBinding
    metadata: {name: leases, namespace: ml-team}
    roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: leases}
    subjects: [{kind: ServiceAccount, name: kubetune, namespace: ml-team}]
    ---
    apiVersion: apps/v1
    kind: Deployment
    metadata: {name: operator, namespace: ml-team, labels: {app: kubetune}}
    spec:
      selector: {matchLabels: {app: kubetune}}
      template:
        metadata: {labels: {app: kubetune}}
        spec:
          serviceAccountName: kubetune
          containers:
          - name: operator
            image: registry.example/kubetune:1.0
            ports: [{name: metrics, containerPort: 8080}]
            env: [{name: LOG_LEVEL, value: info}, {name: PEERING, value: kubetune}]
    ---
    apiVersion: v1
    kind: Service
    metadata: {name: metrics, namespace: ml-team}
    spec:
      selector: {app: kubetune}
      ports: [{name: metrics, port: 8080, targetPort: metrics}]
    ---
    apiVersion: v1
    kind: ConfigMap
    metadata: {name: dashboard, namespace: ml-team}
    data: {dashboard.json: "{}"}
    ---
    apiVersion: coordination.k8s.io/v1
    kind: Lease
    metadata: {name: kubetune, namespace: ml-team}
    spec: {holderIdentity: operator-0, leaseDurationSeconds: 15}
    """
)


def finetune_manifest(name: str, **spec: Any) -> str:
    body = {
        "apiVersion": "kubetune.dev/v1alpha1",
        "kind": "FinetuneJob",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "model": {"base": {"uri": "hf://org/tiny-llama"}},
            "dataset": {"uri": "s3://data/tickets"},
            "method": "lora",
            "lora": {"r": 8, "alpha": 16},
            "hyperparameters": {"maxSteps": 10},
            **spec,
        },
    }
    return json.dumps(body)


class Kubectl:
    def __init__(self, emulator: Emulator, home: Path) -> None:
        self.emulator = emulator
        home.mkdir(parents=True, exist_ok=True)
        self.env = dict(
            os.environ,
            HOME=str(home),
            KUBECONFIG=str(emulator.write_kubeconfig(home / "kubeconfig", namespace=NS)),
        )

    def __call__(
        self, *args: str, stdin: str | None = None, check: bool = True, timeout: float = 30
    ) -> subprocess.CompletedProcess[str]:
        assert KUBECTL is not None
        result = subprocess.run(
            [KUBECTL, *args],
            input=stdin,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed:\n{result.stderr}")
        return result

    def popen(self, *args: str) -> subprocess.Popen[str]:
        assert KUBECTL is not None
        return subprocess.Popen(
            [KUBECTL, *args],
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )


@pytest.fixture(scope="module")
def emu() -> Iterator[Emulator]:
    with start_emulator() as emulator:  # no CRDs: kubectl applies them
        yield emulator
        assert emulator.server.server_errors == []


@pytest.fixture(scope="module")
def kubectl(emu: Emulator, tmp_path_factory: pytest.TempPathFactory) -> Kubectl:
    kubectl = Kubectl(emu, tmp_path_factory.mktemp("kubectl-home"))
    kubectl("create", "namespace", NS)
    created = kubectl("apply", "-f", str(ROOT / "crds")).stdout
    assert created.count("customresourcedefinition.apiextensions.k8s.io/") == 5
    return kubectl


def test_version_discovery_and_openapi(kubectl: Kubectl) -> None:
    version = json.loads(kubectl("version", "-o", "json").stdout)
    assert version["serverVersion"]["gitVersion"].startswith("v1.")
    resources = kubectl("api-resources", "--api-group=kubetune.dev", "-o", "wide").stdout
    assert "finetunejobs" in resources and "ktds" in resources and "FinetuneJob" in resources
    explained = kubectl("explain", "finetunejob.spec.lora.r").stdout
    assert "<integer>" in explained
    assert "<integer>" in kubectl("explain", "jobs.spec.backoffLimit").stdout


def test_client_side_apply_creates_then_patches_builtins(kubectl: Kubectl, emu: Emulator) -> None:
    created = kubectl("apply", "-f", "-", stdin=BUILTINS).stdout
    assert created.count(" created") == 9, created
    changed = BUILTINS.replace("value: info", "value: debug")
    reapplied = kubectl("apply", "-f", "-", stdin=changed).stdout
    assert "deployment.apps/operator configured" in reapplied
    assert reapplied.count(" unchanged") == 8, reapplied
    # a strategic merge patch: env items merged by name, the other fields untouched
    [container] = emu.get("deployments.apps", NS, "operator")["spec"]["template"]["spec"][
        "containers"
    ]
    assert container["env"] == [
        {"name": "LOG_LEVEL", "value": "debug"},
        {"name": "PEERING", "value": "kubetune"},
    ]
    assert container["ports"] == [{"name": "metrics", "containerPort": 8080, "protocol": "TCP"}]
    assert kubectl("get", "deploy,svc,cm,lease,sa,role,rolebinding").stdout.count("AGE") == 7


def test_apply_validates_on_the_server(kubectl: Kubectl) -> None:
    # kubectl sends fieldValidation=Strict: unknown fields are refused
    typo = BUILTINS.replace("holderIdentity", "holderIdentityy")
    result = kubectl("apply", "-f", "-", stdin=typo, check=False)
    assert result.returncode != 0
    assert 'strict decoding error: unknown field "spec.holderIdentityy"' in result.stderr
    bad_job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "bad-job"},
        "spec": {"template": {"spec": {"containers": [{"name": "main", "image": "busybox"}]}}},
    }
    result = kubectl("apply", "-f", "-", stdin=json.dumps(bad_job), check=False)
    assert (
        'spec.template.spec.restartPolicy: Unsupported value: "Always": supported values:'
        ' "OnFailure", "Never"' in result.stderr
    )
    no_rank = finetune_manifest("no-rank", lora={"alpha": 16})
    result = kubectl("apply", "-f", "-", stdin=no_rank, check=False)
    assert 'The FinetuneJob "no-rank" is invalid' in result.stderr
    assert "spec.lora.r: Required value" in result.stderr
    assert kubectl("get", "ft", "no-rank", check=False).returncode != 0


def test_all_examples_are_admitted(kubectl: Kubectl) -> None:
    examples = sorted(
        p for p in (ROOT / "examples").rglob("*.yaml") if "kubetune.dev/" in p.read_text()
    )
    for path in examples:
        result = kubectl("apply", "-n", NS, "-f", str(path), check=False)
        assert result.returncode == 0, f"{path}: {result.stderr}"
    listed = kubectl("get", "datasets,finetunejobs,compressions,evaluations,feedbackloops", "-A")
    assert "support-chat-qlora" in listed.stdout


def test_get_prints_the_crd_columns(kubectl: Kubectl, emu: Emulator) -> None:
    kubectl("apply", "-f", "-", stdin=finetune_manifest("printed"))
    status = {"phase": "Running", "progress": {"step": 7, "loss": 1.25}}
    emu.patch_status(FINETUNEJOBS, NS, "printed", status)
    header, row = kubectl("get", "ft", "printed").stdout.splitlines()
    assert header.split() == ["NAME", "PHASE", "METHOD", "STEP", "LOSS", "AGE"]
    assert row.split()[:5] == ["printed", "Running", "lora", "7", "1.25"]
    wide = kubectl("get", "ft", "printed", "-o", "wide").stdout.splitlines()[0]
    assert "OBJECTIVE" in wide  # a priority-1 column
    listed = kubectl("get", "ft", "-A", "--show-labels").stdout.splitlines()
    assert listed[0].split()[:2] == ["NAMESPACE", "NAME"]


def test_wait_for_a_condition_and_a_jsonpath(kubectl: Kubectl, emu: Emulator) -> None:
    kubectl("apply", "-f", "-", stdin=finetune_manifest("waited"))
    waiting = kubectl.popen("wait", "--for=condition=Ready", "ft/waited", "--timeout=20s")
    emu.patch_status(
        FINETUNEJOBS,
        NS,
        "waited",
        {
            "phase": "Succeeded",
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True",
                    "reason": "Done",
                    "message": "",
                    "lastTransitionTime": "2024-01-01T00:00:00Z",
                }
            ],
        },
    )
    out, err = waiting.communicate(timeout=30)
    assert waiting.returncode == 0, err
    assert "condition met" in out
    done = kubectl("wait", "--for=jsonpath={.status.phase}=Succeeded", "ft/waited", "--timeout=5s")
    assert "condition met" in done.stdout


def test_describe_lists_the_events_of_the_object(kubectl: Kubectl, emu: Emulator) -> None:
    kubectl("apply", "-f", "-", stdin=finetune_manifest("described"))
    obj = emu.get(FINETUNEJOBS, NS, "described")
    assert obj is not None
    ref = {
        "apiVersion": "kubetune.dev/v1alpha1",
        "kind": "FinetuneJob",
        "name": "described",
        "namespace": NS,
        "uid": obj["metadata"]["uid"],
    }
    for index, reason in enumerate(("Started", "Progressing")):
        event = {
            "metadata": {"name": f"described.{index}", "namespace": NS},
            "involvedObject": ref,
            "reason": reason,
            "message": f"the run is {reason.lower()}",
            "type": "Normal",
            "source": {"component": "kubetune"},
            "firstTimestamp": "2024-01-01T00:00:00Z",
            "lastTimestamp": "2024-01-01T00:00:00Z",
            "count": 1,
        }
        emu.create("events", event, admit=True)
    other = {**event, "metadata": {"name": "unrelated", "namespace": NS}}
    other["involvedObject"] = {**ref, "name": "someone-else", "uid": "0"}
    emu.create("events", other, admit=True)
    described = kubectl("describe", "ft/described").stdout
    events = described.split("Events:")[1]
    assert "Started" in events and "the run is progressing" in events
    assert "unrelated" not in events and "someone-else" not in events
    assert "Kind:         FinetuneJob" in described and "Method:" in described


def test_server_side_apply(kubectl: Kubectl, emu: Emulator) -> None:
    config = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "ssa", "namespace": NS},
        "data": {"a": "1", "b": "2"},
    }
    applied = kubectl("apply", "--server-side", "-f", "-", stdin=json.dumps(config)).stdout
    assert "configmap/ssa serverside-applied" in applied
    config["data"] = {"a": "1", "c": "3"}  # b is no longer applied by this manager: removed
    kubectl("apply", "--server-side", "-f", "-", stdin=json.dumps(config))
    stored = emu.get("configmaps", NS, "ssa")
    assert stored is not None and stored["data"] == {"a": "1", "c": "3"}
    result = kubectl("apply", "--server-side", "-f", "-", stdin=finetune_manifest("applied"))
    assert "finetunejob.kubetune.dev/applied serverside-applied" in result.stdout
    stored = emu.get(FINETUNEJOBS, NS, "applied")
    assert stored is not None and stored["spec"]["lora"]["dropout"] == 0.05  # a CRD default


def test_delete(kubectl: Kubectl, emu: Emulator) -> None:
    kubectl("apply", "-f", "-", stdin=finetune_manifest("deleted"))
    assert 'finetunejob.kubetune.dev "deleted" deleted' in kubectl("delete", "ft", "deleted").stdout
    assert emu.get(FINETUNEJOBS, NS, "deleted") is None
    kubectl("create", "namespace", "scratch")
    kubectl("create", "configmap", "leftover", "-n", "scratch", "--from-literal=a=1")
    kubectl("delete", "namespace", "scratch")
    assert emu.objects("configmaps", "scratch") == []


def test_tls_and_bearer_token(tmp_path: Path) -> None:
    with start_emulator(tls=True, token="s3cr3t") as emulator:
        assert emulator.url.startswith("https://127.0.0.1:")
        assert emulator.ca_file is not None and emulator.ca_file.exists()
        kubectl = Kubectl(emulator, tmp_path / "home")
        assert "default" in kubectl("get", "namespaces").stdout
        config = json.loads(Path(kubectl.env["KUBECONFIG"]).read_text())
        config["users"][0]["user"]["token"] = "wrong"
        Path(kubectl.env["KUBECONFIG"]).write_text(json.dumps(config))
        refused = kubectl("get", "namespaces", check=False)
        assert refused.returncode != 0 and "Unauthorized" in refused.stderr
