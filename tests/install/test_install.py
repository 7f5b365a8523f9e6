"""The chart installed as a platform team installs it, and a pipeline run through it.

The operator runs "in a pod": the rendered Deployment, applied with kubectl, is run by the
kubelet stand-in (a bubblewrap sandbox per container, the image's ENTRYPOINT, the service
account's token, CA and namespace at /var/run/secrets/kubernetes.io/serviceaccount,
``KUBERNETES_SERVICE_HOST``/``PORT`` of the emulator's HTTPS port) -- or by a real cluster.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from tests.install import pipeline
from tests.install.conftest import PLATFORMS
from tests.install.installed import Installed, PipelineRun
from tests.install.platform import RELEASE, RELEASE_NS, one

pytestmark = pytest.mark.parametrize("install_platform", PLATFORMS, indirect=True)


def columns(rendered: list[dict[str, Any]], plural: str) -> list[dict[str, Any]]:
    crd = one(rendered, "CustomResourceDefinition", f"{plural}.kubetune.dev")
    version = next(v for v in crd["spec"]["versions"] if v.get("served", True))
    found: list[dict[str, Any]] = version.get("additionalPrinterColumns") or []
    return found


def test_the_chart_installs_and_the_operator_runs_in_its_pod(installed: Installed) -> None:
    platform = installed.platform
    kubectl = platform.kubectl
    served = kubectl("api-resources", "--api-group=kubetune.dev", "-o", "name").split()
    assert sorted(served) == sorted(
        f"{plural}.kubetune.dev" for _, plural, _, _ in pipeline.RESOURCES
    )
    deployment = kubectl.json("-n", RELEASE_NS, "get", f"deployment/{RELEASE}")
    assert deployment["status"]["availableReplicas"] == deployment["spec"]["replicas"] == 1
    (pod,) = platform.operator_pods()
    ready = {c["type"]: c["status"] for c in pod["status"]["conditions"]}
    assert ready["Ready"] == "True", pod["status"]  # the readiness probe on kopf's /healthz
    account = pod["spec"]["serviceAccountName"]
    assert kubectl.get("serviceaccount", account, RELEASE_NS) is not None
    # the operator logged in with the pod's service account, not with a kubeconfig
    logs = platform.pod_logs(RELEASE_NS, pod["metadata"]["name"])
    assert "kubetune operator: in-cluster service account" in logs, logs[-3000:]
    assert "Traceback" not in logs, logs[-3000:]
    if platform.emulated:
        from tests.install.conftest import is_emulated

        emulated = is_emulated(platform)
        name = pod["metadata"]["name"]
        status, _ = emulated.kubelet.http_get(RELEASE_NS, name, 8081, "/healthz")
        assert status == 200
        # the operator's own user: the image's, as the pod's securityContext asks
        assert pod["spec"]["securityContext"]["runAsUser"] == 1000
        for container in pod["status"]["containerStatuses"]:
            assert container["ready"] and container["restartCount"] == 0, container


def test_a_pipeline_reaches_its_done_conditions(
    installed: Installed, reference: PipelineRun
) -> None:
    """Dataset -> FinetuneJob -> Compression, Evaluation -> FeedbackLoop promotion, waited for
    with ``kubectl wait --for=condition=...`` (Ready for Dataset/FeedbackLoop, Succeeded for
    the others); the workloads' termination messages carried the results into the status."""
    statuses = reference.statuses
    for kind, _plural, name, condition in pipeline.RESOURCES:
        status = statuses[f"{kind}/{name}"]
        found = {c["type"]: c for c in status.get("conditions") or []}
        assert found[condition]["status"] == "True", (kind, status)
    dataset = statuses["Dataset/tickets"]
    assert dataset["records"] == 24 and dataset["version"], dataset
    assert dataset["outputUri"].startswith(f"pvc://kubetune-artifacts/{reference.namespace}/")
    tune = statuses["FinetuneJob/tune"]
    assert tune["results"]["steps"] == 2 and tune["results"]["trainLoss"] > 0, tune
    assert statuses["Compression/tune-pruned"]["sizeRatio"] > 0
    assert statuses["Evaluation/tune-eval"]["passed"] is True
    loop = statuses[f"FeedbackLoop/{pipeline.LOOP}"]
    assert (loop["generation"], loop["cycles"]) == (1, 1), loop
    assert loop["history"][0]["reason"] == "Promoted", loop
    annotations = reference.target["spec"]["template"]["metadata"]["annotations"]
    assert annotations[pipeline.ANNOTATION] == loop["champion"]
    # one Job per run: nothing was created twice
    assert all(count == 1 for count in reference.runs().values()), reference.runs()
    print(f"\npipeline: {reference.seconds:.0f}s; {json.dumps(reference.waits)}")


def test_kubectl_shows_printer_columns_and_events(
    installed: Installed, reference: PipelineRun
) -> None:
    kubectl = installed.platform.kubectl
    namespace = reference.namespace
    for kind, plural, name, _ in pipeline.RESOURCES:
        wanted = columns(installed.rendered, plural)
        wide = kubectl("get", plural, name, "-n", namespace, "-o", "wide")
        header, row = wide.splitlines()[:2]
        assert header.split() == ["NAME", *[c["name"].upper() for c in wanted]], wide
        assert row.split()[0] == name
        phase = reference.statuses[f"{kind}/{name}"]["phase"]
        assert row.split()[1] == phase, wide
        narrow = kubectl("get", plural, name, "-n", namespace).splitlines()[0].split()
        assert narrow == ["NAME", *[c["name"].upper() for c in wanted if not c.get("priority")]]
    dataset_row = kubectl("get", "datasets", "tickets", "-n", namespace).splitlines()[1]
    assert re.search(r"\btickets\s+Ready\s+instruction\s+24\b", dataset_row), dataset_row

    events = kubectl.json(
        "get", "events", "-n", namespace, "--field-selector", "involvedObject.name=tickets"
    )["items"]
    reasons = {e["reason"] for e in events if e.get("involvedObject", {}).get("kind") == "Dataset"}
    assert reasons, events
    described = kubectl("describe", "dataset", "tickets", "-n", namespace)
    assert "Events:" in described
    events_part = described.split("Events:", 1)[1]
    for reason in reasons:
        assert reason in events_part, described
    assert ("Ready" in described and "Conditions" in described) or "conditions" in described.lower()
