"""A Dataset with ``parallelism: 3`` through the installed operator, with real pods: the map
stage's Indexed Job runs 3 pods (one per completion index) writing shards on the artifact
claim; the pod of index 1 is killed while it runs and only that index runs again; then the
reduce pod writes the versioned artifact, whose version is that of the same Dataset run in one
pod."""

from __future__ import annotations

import copy
import time
from typing import Any

import pytest

from tests.install import pipeline
from tests.install.conftest import PLATFORMS, team_namespace
from tests.install.installed import WAIT_SECONDS, Installed
from tests.install.platform import EmulatedCluster, Platform

pytestmark = pytest.mark.parametrize("install_platform", PLATFORMS, indirect=True)
NS = "par"
INDEX = "batch.kubernetes.io/job-completion-index"


def datasets(namespace: str) -> list[dict[str, Any]]:
    """The pipeline's tiny Dataset twice: in 3 map pods, and in one pod."""
    base = pipeline.resources(namespace)[0]
    parallel = copy.deepcopy(base)
    parallel["metadata"]["name"] = "tickets-par"
    parallel["spec"]["parallelism"] = 3
    single = copy.deepcopy(base)
    single["metadata"]["name"] = "tickets-one"
    return [parallel, single]


def kill_when_running(platform: Platform, namespace: str, job: str, index: str) -> str:
    """Kill the pod of ``index`` of ``job`` as soon as it runs (SIGKILL of its container on the
    emulator's kubelet; a forced delete on a cluster); returns its name."""
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        if isinstance(platform, EmulatedCluster):
            pods = platform.emu.objects("pods", namespace, labels=f"job-name={job}")
        else:
            pods = platform.kubectl.json("-n", namespace, "get", "pods", "-l", f"job-name={job}")
            pods = pods["items"]
        for pod in pods:
            running = (pod.get("status") or {}).get("phase") == "Running"
            if running and pod["metadata"].get("annotations", {}).get(INDEX) == index:
                name = str(pod["metadata"]["name"])
                if isinstance(platform, EmulatedCluster):
                    platform.kubelet.kill(namespace, name)
                else:
                    platform.kubectl(
                        "-n", namespace, "delete", "pod", name, "--force", "--grace-period=0"
                    )
                return name
        time.sleep(0.05)
    raise AssertionError(f"no running pod of index {index} of Job {job}")


def test_a_three_task_dataset_runs_map_pods_then_reduce(installed: Installed) -> None:
    platform = installed.platform
    kubectl = platform.kubectl
    namespace = team_namespace(platform, NS)
    kubectl.apply(datasets(namespace), platform.workdir, f"datasets-{namespace}")
    killed = kill_when_running(platform, namespace, "tickets-par-dataprep-map-g1", "1")
    for name in ("tickets-par", "tickets-one"):
        kubectl.wait(f"datasets/{name}", "condition=Ready", namespace, timeout=WAIT_SECONDS)
    parallel = kubectl.json("-n", namespace, "get", "datasets/tickets-par")["status"]
    single = kubectl.json("-n", namespace, "get", "datasets/tickets-one")["status"]
    assert (parallel["records"], parallel["version"]) == (single["records"], single["version"])
    assert parallel["records"] == 24
    assert [(s["name"], s["phase"], s["completed"], s["total"]) for s in parallel["stages"]] == [
        ("map", "Succeeded", 3, 3),
        ("reduce", "Succeeded", 1, 1),
    ]
    map_job = "tickets-par-dataprep-map-g1"
    job = kubectl.json("-n", namespace, "get", f"jobs/{map_job}")
    assert job["spec"]["completionMode"] == "Indexed" and job["spec"]["completions"] == 3
    pods = kubectl.json("-n", namespace, "get", "pods", "-l", f"job-name={map_job}")["items"]
    done = [p for p in pods if p["status"]["phase"] == "Succeeded"]
    assert sorted(p["metadata"]["annotations"][INDEX] for p in done) == ["0", "1", "2"]
    # Only the killed index ran again: one pod each for indexes 0 and 2.
    per_index = sorted(p["metadata"]["annotations"][INDEX] for p in pods)
    assert per_index.count("0") == per_index.count("2") == 1, per_index
    if platform.emulated:  # (a cluster may drop the force-deleted pod from the list)
        assert per_index.count("1") == 2 and killed not in {p["metadata"]["name"] for p in done}
        assert parallel["stages"][0]["failed"] == 1
    for pod in done:
        index = pod["metadata"]["annotations"][INDEX]
        message = pod["status"]["containerStatuses"][0]["state"]["terminated"]["message"]
        assert f'"rank": {index}' in message or f'"rank":{index}' in message, message
    reduce = kubectl.json("-n", namespace, "get", "jobs/tickets-par-dataprep-reduce-g1")
    assert reduce["status"]["succeeded"] == 1
    assert parallel["outputUri"] == f"pvc://kubetune-artifacts/{namespace}/dataset/tickets-par/g1"
