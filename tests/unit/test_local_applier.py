"""The local runtime applies plans like the API server: owned resources, deletions, patches."""

from __future__ import annotations

import copy
import signal
import subprocess
from pathlib import Path

import pytest
from kubetune.local.applier import PlanApplier, merge_patch, patched_fields
from kubetune.local.executor import LocalExecutor, LocalPaths
from kubetune.local.store import Execution, LocalStore, StoredResource
from kubetune.plan.world import Plan

from tests.helpers.local_manifests import (
    API,
    LOOP,
    LOOP_UID,
    OWNER,
    config_map,
    dataset,
    job,
    owned,
    ref,
)


class Stops:
    """Records the Jobs whose processes the applier stopped; some are 'running'."""

    def __init__(self, running: set[str] | None = None) -> None:
        self.running = set(running or ())
        self.stopped: list[str] = []

    def __call__(self, name: str) -> bool:
        self.stopped.append(name)
        return name in self.running


@pytest.fixture
def store(tmp_path: Path) -> LocalStore:
    store = LocalStore(tmp_path)
    store.apply(copy.deepcopy(LOOP), "loop.yaml")
    return store


def loop_of(store: LocalStore) -> StoredResource:
    return store.state.resources["FeedbackLoop/loop"]


def test_reapplying_changed_annotations_updates_them_without_a_new_generation(
    store: LocalStore,
) -> None:
    assert store.apply(copy.deepcopy(LOOP), "loop.yaml") == "unchanged"
    annotated = copy.deepcopy(LOOP)
    annotated["metadata"]["annotations"] = {"kubetune.dev/trigger": "2"}
    assert store.apply(annotated, "loop.yaml") == "configured"
    meta = loop_of(store).body["metadata"]
    assert meta["annotations"] == {"kubetune.dev/trigger": "2"}
    assert meta["generation"] == 1
    assert store.apply(copy.deepcopy(annotated), "loop.yaml") == "unchanged"


# --- merge patches ---------------------------------------------------------------------------


def test_merge_patch_follows_rfc_7386() -> None:
    target = {"a": {"b": 1, "c": [1, 2]}, "d": "keep", "e": 1}
    patch = {"a": {"b": 2, "c": [3]}, "e": None, "f": {"g": "new"}}
    merged = merge_patch(target, patch)
    assert merged == {"a": {"b": 2, "c": [3]}, "d": "keep", "f": {"g": "new"}}
    assert target == {"a": {"b": 1, "c": [1, 2]}, "d": "keep", "e": 1}  # not modified
    assert merge_patch({"a": 1}, "scalar") == "scalar"
    assert merge_patch("scalar", {"a": {"b": None, "c": 1}}) == {"a": {"c": 1}}


def test_patched_fields_leave_out_the_address() -> None:
    patch = {
        **ref("apps/v1", "Deployment", "server"),
        "spec": {"template": {"metadata": {"annotations": {"model-uri": "file:///m"}}}},
    }
    patch["metadata"]["labels"] = {"tier": "prod", "old": None}
    assert patched_fields(patch) == [
        "metadata.labels.tier=prod",
        "metadata.labels.old=null",
        "spec.template.metadata.annotations.model-uri=file:///m",
    ]


# --- children that are kubetune resources ----------------------------------------------------


def test_a_kubetune_child_becomes_a_resource_with_uid_generation_and_owner(
    store: LocalStore,
) -> None:
    applier = PlanApplier(store, Stops())
    applied = applier.apply(loop_of(store), Plan(children=[dataset("loop-c1")]))
    assert applied.changed
    stored = store.state.resources["Dataset/loop-c1"]
    meta = stored.body["metadata"]
    assert meta["uid"] == "local-dataset-loop-c1" and meta["generation"] == 1
    assert meta["ownerReferences"] == [OWNER]
    assert meta["labels"]["kubetune.dev/cycle"] == "1"
    assert "status" not in stored.body
    assert stored.source == "FeedbackLoop/loop"
    assert "Dataset/loop-c1" not in store.state.children
    assert [r.name for r in store.owned_by(LOOP_UID)] == ["loop-c1"]


def test_creating_an_existing_resource_again_changes_nothing(store: LocalStore) -> None:
    applier = PlanApplier(store, Stops())
    applier.apply(loop_of(store), Plan(children=[dataset("loop-c1")]))
    store.set_status("Dataset", "loop-c1", {"phase": "Ready"})
    again = dataset("loop-c1")
    again["spec"]["sources"] = [{"uri": "file:///other.jsonl"}]
    applied = applier.apply(loop_of(store), Plan(children=[again]))
    assert not applied.changed
    body = store.state.resources["Dataset/loop-c1"].body
    assert body["spec"]["sources"] == [{"uri": "file:///d.jsonl"}]
    assert body["status"] == {"phase": "Ready"} and body["metadata"]["generation"] == 1


def test_an_invalid_kubetune_child_is_refused_once_with_an_event_and_a_note(
    store: LocalStore,
) -> None:
    applier = PlanApplier(store, Stops())
    bad = owned("Dataset", "loop-c1", {"sources": []})
    first = applier.apply(loop_of(store), Plan(children=[bad]))
    second = applier.apply(loop_of(store), Plan(children=[bad]))
    assert not first.changed and not second.changed
    assert "Dataset/loop-c1" not in store.state.resources
    assert len(first.notes) == 1 and "cannot create Dataset/loop-c1" in first.notes[0]
    assert "spec.sources" in first.notes[0]
    assert second.notes == []
    warnings = [e for e in store.state.events if e["reason"] == "CreateFailed"]
    assert len(warnings) == 1 and warnings[0]["object"] == "FeedbackLoop/loop"


# --- deletions -------------------------------------------------------------------------------


def test_deleting_a_job_stops_its_process_and_forgets_it(store: LocalStore) -> None:
    store.create_child(job("x-prep-g1", "uid-x"))
    store.create_child(config_map("x-prep-g1-spec", "uid-x"))
    store.state.executions["x-prep-g1"] = Execution(job="x-prep-g1", run_id="g1", state="Running")
    stops = Stops(running={"x-prep-g1"})
    applier = PlanApplier(store, stops)
    plan = Plan(
        deletions=[ref("batch/v1", "Job", "x-prep-g1"), ref("v1", "ConfigMap", "x-prep-g1-spec")]
    )
    assert applier.apply(loop_of(store), plan).changed
    assert stops.stopped == ["x-prep-g1"]
    assert store.state.children == {} and store.state.executions == {}
    # Deleting what is gone is a no-op (a 404), so a repeated plan settles.
    assert not applier.apply(loop_of(store), plan).changed


def test_deleting_a_resource_deletes_what_it_owns_recursively(store: LocalStore) -> None:
    applier = PlanApplier(store, Stops())
    evaluation_owner = {
        **OWNER,
        "kind": "Evaluation",
        "name": "loop-c1",
        "uid": "local-evaluation-loop-c1",
    }
    evaluation = owned(
        "Evaluation",
        "loop-c1",
        {
            "candidate": {"uri": "file:///m"},
            "prompts": {"dataset": {"name": "t"}},
            "metrics": [{"name": "rougeL"}],
        },
    )
    applier.apply(
        loop_of(store),
        Plan(
            children=[
                dataset("loop-c1"),
                dataset("loop-c2"),
                evaluation,
                dataset("nested", owner=evaluation_owner),
            ]
        ),
    )
    store.create_child(job("loop-c1-prep-g1", "local-dataset-loop-c1"))
    store.create_child(config_map("loop-c1-prep-g1-spec", "local-dataset-loop-c1"))
    store.create_child(job("nested-prep-g1", "local-dataset-nested"))
    store.create_child(job("loop-c2-prep-g1", "local-dataset-loop-c2"))
    shared = config_map("shared", "local-dataset-loop-c1")
    shared["metadata"]["ownerReferences"].append({"uid": "local-dataset-loop-c2"})
    store.create_child(shared)
    store.state.executions["nested-prep-g1"] = Execution(
        job="nested-prep-g1", run_id="g1", state="Running"
    )
    stops = Stops(running={"nested-prep-g1"})
    applier = PlanApplier(store, stops)
    deletions = [ref(API, "Dataset", "loop-c1"), ref(API, "Evaluation", "loop-c1")]
    assert applier.apply(loop_of(store), Plan(deletions=deletions)).changed
    assert sorted(store.state.resources) == ["Dataset/loop-c2", "FeedbackLoop/loop"]
    # The nested Dataset's Job went with it; a child with another living owner stays.
    assert sorted(store.state.children) == ["ConfigMap/shared", "Job/loop-c2-prep-g1"]
    assert "nested-prep-g1" in stops.stopped and "nested-prep-g1" not in store.state.executions
    assert not applier.apply(loop_of(store), Plan(deletions=deletions)).changed


def test_deleting_the_loop_takes_its_cycles_with_it(store: LocalStore) -> None:
    applier = PlanApplier(store, Stops())
    applier.apply(loop_of(store), Plan(children=[dataset("loop-c1")]))
    store.create_child(job("loop-feedback-c1", LOOP_UID))
    applier.apply(loop_of(store), Plan(deletions=[ref(API, "FeedbackLoop", "loop")]))
    assert store.state.resources == {} and store.state.children == {}


# --- patches ---------------------------------------------------------------------------------


def test_a_suspend_patch_is_merged_into_the_stored_job(store: LocalStore) -> None:
    store.create_child(job("x-prep-g1", "uid-x"))
    applier = PlanApplier(store, Stops())
    patch = {**ref("batch/v1", "Job", "x-prep-g1"), "spec": {"suspend": True}}
    assert applier.apply(loop_of(store), Plan(patches=[patch])).changed
    stored = store.state.children["Job/x-prep-g1"]
    assert stored["spec"]["suspend"] is True
    assert stored["spec"]["template"]["spec"]["containers"][0]["image"] == "img"
    assert stored["metadata"]["labels"]["kubetune.dev/kind"] == "Dataset"
    assert not applier.apply(loop_of(store), Plan(patches=[patch])).changed
    assert store.state.patched == {}


def test_suspending_a_running_job_stops_it_and_resuming_starts_it_anew(
    store: LocalStore,
) -> None:
    store.create_child(job("x-prep-g1", "uid-x"))
    store.state.executions["x-prep-g1"] = Execution(job="x-prep-g1", run_id="g1", state="Running")
    stops = Stops(running={"x-prep-g1"})
    applier = PlanApplier(store, stops)
    suspend = {**ref("batch/v1", "Job", "x-prep-g1"), "spec": {"suspend": True}}
    applier.apply(loop_of(store), Plan(patches=[suspend]))
    assert stops.stopped == ["x-prep-g1"]
    assert "x-prep-g1" not in store.state.executions
    resume = {**ref("batch/v1", "Job", "x-prep-g1"), "spec": {"suspend": False}}
    assert applier.apply(loop_of(store), Plan(patches=[resume])).changed
    assert store.state.children["Job/x-prep-g1"]["spec"]["suspend"] is False


def test_a_patch_of_an_absent_job_does_nothing(store: LocalStore) -> None:
    applier = PlanApplier(store, Stops())
    patch = {**ref("batch/v1", "Job", "gone"), "spec": {"suspend": True}}
    applied = applier.apply(loop_of(store), Plan(patches=[patch]))
    assert not applied.changed and applied.notes == []
    assert store.state.children == {} and store.state.patched == {}


def test_a_patch_of_an_object_outside_the_store_is_recorded_with_a_note(
    store: LocalStore,
) -> None:
    applier = PlanApplier(store, Stops())
    promote = {
        **ref("apps/v1", "Deployment", "server"),
        "spec": {"template": {"metadata": {"annotations": {"model-uri": "file:///c1"}}}},
    }
    applied = applier.apply(loop_of(store), Plan(patches=[promote]))
    assert applied.changed
    assert applied.notes == [
        "would patch Deployment/server: "
        "spec.template.metadata.annotations.model-uri=file:///c1 (no cluster)"
    ]
    record = store.state.patched["Deployment/server"]
    assert record["apiVersion"] == "apps/v1"
    assert record["spec"]["template"]["metadata"]["annotations"]["model-uri"] == "file:///c1"
    # The same patch again: no change, no second note.
    again = applier.apply(loop_of(store), Plan(patches=[copy.deepcopy(promote)]))
    assert not again.changed and again.notes == []
    # A later promotion merges into the record.
    promote["spec"]["template"]["metadata"]["annotations"]["model-uri"] = "file:///c2"
    assert applier.apply(loop_of(store), Plan(patches=[promote])).changed
    annotations = store.state.patched["Deployment/server"]["spec"]["template"]["metadata"]
    assert annotations["annotations"]["model-uri"] == "file:///c2"
    store.save()
    assert LocalStore(store.workdir).state.patched == store.state.patched


def test_a_spec_patch_of_a_stored_resource_bumps_its_generation(store: LocalStore) -> None:
    applier = PlanApplier(store, Stops())
    patch = {
        **ref(API, "FeedbackLoop", "loop"),
        "spec": {"suspend": True},
        "status": {"phase": "Failed"},
    }
    assert applier.apply(loop_of(store), Plan(patches=[patch])).changed
    body = loop_of(store).body
    assert body["spec"]["suspend"] is True and body["metadata"]["generation"] == 2
    assert "status" not in body  # status goes through the status subresource only
    assert not applier.apply(loop_of(store), Plan(patches=[patch])).changed


# --- stopping a local process ----------------------------------------------------------------


def test_executor_stop_ends_the_process_group(tmp_path: Path) -> None:
    executor = LocalExecutor(LocalPaths(tmp_path))
    proc = subprocess.Popen(["sleep", "60"], start_new_session=True)
    executor._procs["j"] = proc  # as start() records it
    assert executor.stop("j")
    assert proc.returncode == -signal.SIGTERM
    assert executor.running() == 0
    assert not executor.stop("j")
