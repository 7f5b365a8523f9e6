"""The controllers' shell for resources that own resources, independent of any planner's
decisions: a scripted FeedbackLoop planner (monkeypatched into the reconciler) asks the real
operator to create kubetune resources it controls, to patch objects of any kind, and to delete
kubetune resources, ConfigMaps and Jobs; the tests check what the shell observes and does."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from kubetune.api.resources import AnyResource, FeedbackLoop
from kubetune.controllers import reconcile
from kubetune.plan import naming
from kubetune.plan.world import ObservedWorld, OperatorConfig, Plan

from tests.emulator import Emulator, Kubelet
from tests.integration.conftest import (
    DATASETS,
    FEEDBACKLOOPS,
    JOBS,
    NS,
    ROOT,
    OperatorFactory,
    dataset,
    status_of,
    step_result,
    wait_event,
    wait_job,
)

LOOP = "loop"
DEPLOYMENTS = "deployments.apps"
real_plan = reconcile.plan

Decide = Callable[[AnyResource, ObservedWorld], Plan]


class ScriptedPlanner:
    """Plans FeedbackLoops with ``decide`` (replaceable while the operator runs); records what
    each pass observed as ``world.owned``. Other kinds get their real planner."""

    def __init__(self, decide: Decide) -> None:
        self.decide = decide
        self.lock = threading.Lock()
        self.owned_seen: list[dict[tuple[str, str], str | None]] = []

    def __call__(self, resource: AnyResource, world: ObservedWorld, config: OperatorConfig) -> Plan:
        if resource.kind != "FeedbackLoop":
            return real_plan(resource, world, config)
        with self.lock:
            self.owned_seen.append(
                {key: (r.status.phase if r.status else None) for key, r in world.owned.items()}
            )
            return self.decide(resource, world)


@pytest.fixture()
def script(monkeypatch: pytest.MonkeyPatch) -> Iterator[ScriptedPlanner]:
    planner = ScriptedPlanner(lambda resource, world: Plan())
    monkeypatch.setattr(reconcile, "plan", planner)
    yield planner


def loop_manifest() -> dict[str, Any]:
    import yaml

    body = yaml.safe_load((ROOT / "examples" / "feedback-loop.yaml").read_text())
    body["metadata"] = {"name": LOOP, "namespace": NS}
    return dict(body)


def owned_meta(loop: AnyResource, name: str) -> dict[str, Any]:
    return naming.child_metadata(loop, name, "feedback", "c1", {"kubetune.dev/feedback-loop": LOOP})


def cycle_dataset(loop: AnyResource, name: str) -> dict[str, Any]:
    body = dataset(name)
    body["metadata"] = owned_meta(loop, name)
    return body


def config_map(loop: AnyResource, name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": owned_meta(loop, name)}


def job(loop: AnyResource, name: str) -> dict[str, Any]:
    pod = {"containers": [{"name": "main", "image": "busybox"}], "restartPolicy": "Never"}
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": owned_meta(loop, name),
        "spec": {"template": {"spec": pod}},
    }


def ref(api_version: str, kind: str, name: str) -> dict[str, Any]:
    return {"apiVersion": api_version, "kind": kind, "metadata": {"name": name, "namespace": NS}}


def promotion(kind: str = "Deployment", api_version: str = "apps/v1") -> dict[str, Any]:
    annotations = {"model-uri": "s3://models/c1"}
    patch = ref(api_version, kind, "web")
    patch["spec"] = {"template": {"metadata": {"annotations": annotations}}}
    return patch


def deployment() -> dict[str, Any]:
    labels = {"app": "web"}
    return {
        "metadata": {"name": "web", "namespace": NS},
        "spec": {
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "server", "image": "registry.example/serve"}]},
            },
        },
    }


def annotation(emu: Emulator) -> str | None:
    obj = emu.get(DEPLOYMENTS, NS, "web") or {}
    template = (obj.get("spec") or {}).get("template") or {}
    return ((template.get("metadata") or {}).get("annotations") or {}).get("model-uri")


def status(phase: str, message: str) -> dict[str, Any]:
    return {"phase": phase, "message": message}


def test_a_controlled_resource_becoming_ready_wakes_its_owner_which_patches_a_deployment(
    emu: Emulator, kubelet: Kubelet, operator: OperatorFactory, script: ScriptedPlanner
) -> None:
    def decide(loop: AnyResource, world: ObservedWorld) -> Plan:
        child = world.owned.get(("Dataset", f"{LOOP}-c1"))
        if child is None or child.status is None or child.status.phase != "Ready":
            return Plan(
                children=[cycle_dataset(loop, f"{LOOP}-c1")], status=status("Running", "c1")
            )
        return Plan(patches=[promotion()], status=status("Ready", "promoted c1"))

    script.decide = decide
    emu.create(DEPLOYMENTS, deployment())
    with operator():
        created = emu.create(FEEDBACKLOOPS, loop_manifest(), admit=True)
        # A Dataset naming the loop as controller, but with another uid: not the loop's.
        impostor = cycle_dataset(FeedbackLoop.model_validate(created), f"{LOOP}-old")
        impostor["metadata"]["ownerReferences"][0]["uid"] = "an-earlier-loop"
        emu.create(DATASETS, impostor, admit=True)
        child = emu.wait_for(DATASETS, NS, f"{LOOP}-c1", timeout=15)
        owner = child["metadata"]["ownerReferences"][0]
        assert (owner["kind"], owner["uid"], owner["controller"]) == (
            "FeedbackLoop",
            created["metadata"]["uid"],
            True,
        )
        wait_job(emu, f"{LOOP}-c1-dataprep-g1")
        kubelet.succeed(NS, f"{LOOP}-c1-dataprep-g1", step_result("dataprep", outputUri="s3://d"))
        started = time.monotonic()
        emu.wait_for(DEPLOYMENTS, NS, "web", lambda _: annotation(emu) == "s3://models/c1")
        # The Dataset's readiness woke the loop (its planner asked for no requeue at all).
        assert time.monotonic() - started < 5
        emu.wait_for(FEEDBACKLOOPS, NS, LOOP, {"status": {"phase": "Ready"}})
    seen = set().union(*script.owned_seen)
    assert seen == {("Dataset", f"{LOOP}-c1")}
    assert script.owned_seen[-1] == {("Dataset", f"{LOOP}-c1"): "Ready"}
    deployment_patches = emu.requests("PATCH", DEPLOYMENTS)
    assert {r.name for r in deployment_patches} == {"web"}
    assert all(r.subresource is None for r in deployment_patches)


def test_a_refused_promotion_patch_is_a_warning_and_is_retried_until_it_applies(
    emu: Emulator, operator: OperatorFactory, script: ScriptedPlanner
) -> None:
    target = {"patch": promotion("InferenceService", "serving.kserve.io/v1beta1")}
    script.decide = lambda loop, world: Plan(
        patches=[target["patch"]], status=status("Ready", "promoted c1")
    )
    with operator() as runner:
        emu.create(FEEDBACKLOOPS, loop_manifest(), admit=True)
        kind, _, message = wait_event(emu, LOOP, "ApplyUnknownKind")
        assert kind == "Warning"
        assert message == (
            "cannot patch serving.kserve.io/v1beta1 InferenceService default/web: "
            "the API server does not serve serving.kserve.io/v1beta1 (for kind InferenceService)"
        )
        target["patch"] = promotion()
        _, _, message = wait_event(emu, LOOP, "ApplyNotFound")
        assert message == "cannot patch apps/v1 Deployment default/web: it does not exist"
        assert status_of(emu, FEEDBACKLOOPS, LOOP).get("phase") is None  # not written yet
        emu.create(DEPLOYMENTS, deployment())
        emu.wait_for(DEPLOYMENTS, NS, "web", lambda _: annotation(emu) == "s3://models/c1")
        emu.wait_for(FEEDBACKLOOPS, NS, LOOP, {"status": {"phase": "Ready"}})
        time.sleep(0.3)
    assert "cannot patch apps/v1 Deployment default/web: it does not exist; retrying in" in (
        runner.output
    )
    # One Warning per distinct refusal, however many retries.
    reasons = [e for e in emu.objects("events", NS) if e.get("reason", "").startswith("Apply")]
    assert sorted(e["reason"] for e in reasons) == ["ApplyNotFound", "ApplyUnknownKind"]


def test_planned_deletions_of_resources_configmaps_and_jobs_then_the_loop_cascades(
    emu: Emulator, operator: OperatorFactory, script: ScriptedPlanner
) -> None:
    deleting = threading.Event()

    def decide(loop: AnyResource, world: ObservedWorld) -> Plan:
        doomed = [
            cycle_dataset(loop, f"{LOOP}-c1"),
            config_map(loop, f"{LOOP}-count-s0-1-spec"),
            job(loop, f"{LOOP}-count-s0-1"),
        ]
        if not deleting.is_set():
            kept = cycle_dataset(loop, f"{LOOP}-c2")
            return Plan(children=[*doomed, kept], status=status("Running", "c2"))
        refs = [ref(d["apiVersion"], d["kind"], d["metadata"]["name"]) for d in doomed]
        return Plan(deletions=refs, status=status("Ready", "trimmed"))

    script.decide = decide
    with operator():
        emu.create(FEEDBACKLOOPS, loop_manifest(), admit=True)
        for resource, name in (
            (DATASETS, f"{LOOP}-c1"),
            (DATASETS, f"{LOOP}-c2"),
            ("configmaps", f"{LOOP}-count-s0-1-spec"),
            (JOBS, f"{LOOP}-count-s0-1"),
        ):
            emu.wait_for(resource, NS, name, timeout=15)
        deleting.set()
        emu.patch(FEEDBACKLOOPS, NS, LOOP, {"metadata": {"annotations": {"poke": "1"}}})
        emu.wait_for_absence(DATASETS, NS, f"{LOOP}-c1", timeout=15)
        emu.wait_for_absence("configmaps", NS, f"{LOOP}-count-s0-1-spec")
        emu.wait_for_absence(JOBS, NS, f"{LOOP}-count-s0-1")
        assert emu.get(DATASETS, NS, f"{LOOP}-c2") is not None
        emu.wait_for(FEEDBACKLOOPS, NS, LOOP, {"status": {"phase": "Ready"}})
        emu.delete(FEEDBACKLOOPS, NS, LOOP)
        emu.wait_for_absence(FEEDBACKLOOPS, NS, LOOP, timeout=15)
        emu.wait_for_absence(DATASETS, NS, f"{LOOP}-c2", timeout=15)
        emu.wait_for_absence(JOBS, NS, f"{LOOP}-c2-dataprep-g1", timeout=15)


def test_a_job_finished_before_its_pod_is_seen_gets_its_results_from_the_api(
    emu: Emulator, kubelet: Kubelet, operator: OperatorFactory
) -> None:
    with operator():
        emu.create(DATASETS, dataset(), admit=True)
        wait_job(emu, "tickets-dataprep-g1")
        kubelet.start(NS, "tickets-dataprep-g1")
        emu.wait_for(DATASETS, NS, "tickets", {"status": {"phase": "Running"}})
        emu.faults.hold_watches("pods")  # the operator sees the Job complete, the Pod running
        result = step_result("dataprep", outputUri="s3://out/tickets", details={"records": 42})
        kubelet.succeed(NS, "tickets-dataprep-g1", result)
        ready = emu.wait_for(DATASETS, NS, "tickets", {"status": {"phase": "Ready"}})
        assert (ready["status"]["outputUri"], ready["status"]["records"]) == (
            "s3://out/tickets",
            42,
        )
        emu.faults.release_watches()
    written = [r.data for r in emu.requests("PATCH", DATASETS) if r.subresource == "status"]
    ready_writes = [ops[-1]["value"] for ops in written if ops[-1]["value"]["phase"] == "Ready"]
    assert ready_writes and all(w["outputUri"] == "s3://out/tickets" for w in ready_writes)
