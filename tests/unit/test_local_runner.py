"""`kubetune run`'s loop with a stand-in planner: owned resources, deletions, when a run ends."""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any

import pytest
from kubetune.api.resources import AnyResource
from kubetune.local import runner as runner_module
from kubetune.local.feedback_checks import PeriodicChecks, finished_count_jobs
from kubetune.local.runner import LocalRunner, is_done
from kubetune.local.store import Execution, StoredResource
from kubetune.plan.world import ObservedWorld, OperatorConfig, Plan

from tests.helpers.local_manifests import API, LOOP, OWNER, dataset, ref

BASE = {
    "apiVersion": API,
    "kind": "Dataset",
    "metadata": {"name": "tickets"},
    "spec": {"sources": [{"uri": "file:///tickets.jsonl"}]},
}
READY = {"phase": "Ready", "observedGeneration": 1}


class Planner:
    """A stand-in for kubetune.plan.plan: the loop makes one cycle Dataset, then deletes it."""

    def __init__(self, delete_after: int | None = None) -> None:
        self.worlds: dict[str, list[ObservedWorld]] = {}
        self.passes = 0
        self.delete_after = delete_after

    def __call__(self, resource: AnyResource, world: ObservedWorld, config: OperatorConfig) -> Plan:
        self.worlds.setdefault(resource.name, []).append(world)
        if resource.kind != "FeedbackLoop":
            return Plan(status=READY)
        self.passes += 1
        result = Plan(status=READY, requeue_after=1.0)
        if self.delete_after is not None and self.passes > self.delete_after:
            result.deletions.append(ref(API, "Dataset", "loop-c1"))
        elif ("Dataset", "loop-c1") not in world.owned:
            result.children.append(dataset("loop-c1"))
        return result


@pytest.fixture
def local(tmp_path: Path) -> LocalRunner:
    runner = LocalRunner(tmp_path / "work", poll_seconds=0.01)
    runner.apply([("base.yaml", copy.deepcopy(BASE)), ("loop.yaml", copy.deepcopy(LOOP))])
    return runner


def test_world_owned_holds_what_the_resource_controls(local: LocalRunner) -> None:
    store = local.store
    store.create_resource(dataset("loop-c1"), "FeedbackLoop/loop")
    not_controller = dataset("other")
    not_controller["metadata"]["ownerReferences"] = [{**OWNER, "controller": False}]
    store.create_resource(not_controller, "x")
    other_owner = dataset("foreign", owner={**OWNER, "uid": "local-feedbackloop-foreign"})
    store.create_resource(other_owner, "x")
    loop = store.state.resources["FeedbackLoop/loop"]
    world = local.world_for(loop)
    assert list(world.owned) == [("Dataset", "loop-c1")]
    assert world.owned[("Dataset", "loop-c1")].metadata.labels["kubetune.dev/cycle"] == "1"
    assert ("Dataset", "tickets") in world.resources
    assert local.world_for(store.state.resources["Dataset/tickets"]).owned == {}


def test_a_created_resource_is_planned_on_the_next_pass_and_the_run_ends(
    local: LocalRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    planner = Planner()
    monkeypatch.setattr(runner_module, "plan", planner)
    started = time.monotonic()
    summary = local.run()
    # requeue_after did not keep the run waiting: it ended when a pass changed nothing.
    assert time.monotonic() - started < 5
    assert summary.ok
    assert [r["metadata"]["name"] for r in summary.resources] == ["loop-c1", "tickets", "loop"]
    assert len(planner.worlds["loop-c1"]) >= 1
    assert planner.worlds["loop"][0].owned == {}
    assert ("Dataset", "loop-c1") in planner.worlds["loop"][-1].owned
    assert local.store.state.resources["Dataset/loop-c1"].body["status"] == READY


def test_a_deleted_resource_leaves_the_store_and_the_run(
    local: LocalRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    planner = Planner(delete_after=2)
    monkeypatch.setattr(runner_module, "plan", planner)
    summary = local.run()
    assert "Dataset/loop-c1" not in local.store.state.resources
    assert [r["metadata"]["name"] for r in summary.resources] == ["tickets", "loop"]
    assert planner.worlds["loop"][-1].owned == {}


def test_parsed_resources_are_reused_until_the_body_changes(local: LocalRunner) -> None:
    stored = local.store.state.resources["Dataset/tickets"]
    first = local.parsed.get(stored)
    assert local.parsed.get(stored) is first
    local.store.set_status("Dataset", "tickets", READY)
    second = local.parsed.get(stored)
    assert second is not first and second.status is not None
    local.store.apply({**BASE, "spec": {"sources": [{"uri": "file:///new.jsonl"}]}}, "b.yaml")
    third = local.parsed.get(stored)
    assert third.generation == 2 and third.spec.sources[0].uri == "file:///new.jsonl"  # type: ignore[union-attr]


def test_an_idle_or_suspended_loop_counts_as_done() -> None:
    def body(phase: str, active: list[str] | None = None) -> dict[str, Any]:
        return {"kind": "FeedbackLoop", "status": {"phase": phase, "activeRuns": active}}

    assert is_done(body("Ready"))
    assert is_done(body("Suspended"))
    assert not is_done(body("Suspended", ["c2"]))
    assert not is_done(body("Running", ["c1"]))
    assert not is_done(body("Waiting"))
    assert not is_done({"kind": "FinetuneJob", "status": {"phase": "Suspended"}})


def test_a_loop_whose_cycles_all_await_approval_is_done_until_its_champion_publish_fails() -> None:
    waiting = [{"runId": "c1"}, {"runId": "c2"}]
    status: dict[str, Any] = {"phase": "Running", "activeRuns": ["c1"], "awaitingApproval": waiting}
    assert is_done({"kind": "FeedbackLoop", "status": status})
    assert not is_done({"kind": "FeedbackLoop", "status": status | {"activeRuns": ["c1", "c3"]}})
    failed = [{"type": "ChampionPublished", "status": "False", "reason": "PublishFailed"}]
    ready = {"phase": "Ready", "conditions": failed}
    assert not is_done({"kind": "FeedbackLoop", "status": ready})
    # the loop's own rules are the loop's: another kind with the same fields goes by its phase
    assert not is_done({"kind": "Evaluation", "status": status})
    assert is_done({"kind": "Evaluation", "status": ready | {"phase": "Succeeded"}})


# --- periodic checks -------------------------------------------------------------------------


def count_job(run_id: str, kind: str = "Job") -> dict[str, Any]:
    name = f"loop-feedback-{run_id}" + ("-spec" if kind == "ConfigMap" else "")
    labels = {
        "kubetune.dev/kind": "FeedbackLoop",
        "kubetune.dev/name": "loop",
        "kubetune.dev/run-id": run_id,
    }
    return {
        "apiVersion": "batch/v1" if kind == "Job" else "v1",
        "kind": kind,
        "metadata": {"name": name, "labels": labels},
        "spec": {},
    }


def drift_check(slot: int, champion: str) -> dict[str, Any]:
    body = dataset(f"loop-drift-{slot}")
    body["kind"] = "Evaluation"
    body["metadata"]["labels"] = {"kubetune.dev/drift-check": str(slot)}
    body["spec"] = {"candidate": {"uri": champion}}
    return body


def test_one_count_per_since_cycle_and_one_drift_check_per_champion_per_run() -> None:
    loop = StoredResource(body=copy.deepcopy(LOOP))
    checks = PeriodicChecks()
    assert checks.allow(loop, count_job("s0-100", "ConfigMap"))
    assert checks.allow(loop, count_job("s0-100"))
    assert checks.allow(loop, count_job("s0-100"))  # the same count, planned again
    assert not checks.allow(loop, count_job("s0-101"))  # the next slot's count
    assert checks.allow(loop, count_job("s1-101"))  # records since the new cycle c1
    assert checks.allow(loop, count_job("c1"))  # a collect Job is no periodic check
    assert checks.allow(loop, drift_check(100, "file:///champion"))
    assert not checks.allow(loop, drift_check(101, "file:///champion"))
    assert checks.allow(loop, drift_check(101, "file:///promoted"))
    assert checks.allow(loop, dataset("loop-c2"))
    other = StoredResource(body={**copy.deepcopy(LOOP), "kind": "Dataset"})
    assert checks.allow(other, count_job("s0-102"))


def test_a_new_run_forgets_finished_counts_so_it_counts_again(local: LocalRunner) -> None:
    state = local.store.state
    for run_id, execution_state in (("s0-1", "Succeeded"), ("s0-2", "Failed"), ("s0-3", "Running")):
        local.store.create_child(count_job(run_id))
        local.store.create_child(count_job(run_id, "ConfigMap"))
        name = f"loop-feedback-{run_id}"
        state.executions[name] = Execution(job=name, run_id=run_id, state=execution_state)
    local.store.create_child(count_job("c1"))
    state.executions["loop-feedback-c1"] = Execution(
        job="loop-feedback-c1", run_id="c1", state="Succeeded"
    )
    assert finished_count_jobs(state) == ["loop-feedback-s0-1", "loop-feedback-s0-2"]
    local.apply([("loop.yaml", copy.deepcopy(LOOP))])
    # Finished counts are gone with their ConfigMaps; the interrupted one is rerun anyway
    # (its Job goes; its ConfigMap is planned again as is); the cycle's collect Job stays.
    assert sorted(state.children) == ["ConfigMap/loop-feedback-s0-3-spec", "Job/loop-feedback-c1"]
    assert sorted(state.executions) == ["loop-feedback-c1"]
