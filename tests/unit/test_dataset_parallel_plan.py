"""spec.parallelism of a Dataset: validation (typed API and CRD), the staged plan (map Indexed
Job, then reduce) as the planner and `kubetune plan` render it, and N=1 unchanged."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from kubetune.api.resources import Dataset
from kubetune.cli import app
from kubetune.plan import ObservedJob, ObservedPod, ObservedWorld, OperatorConfig, plan
from kubetune.schema.validation import validate_against_crd, validate_document
from typer.testing import CliRunner

REPO = Path(__file__).resolve().parents[2]
NOW = datetime(2025, 1, 1, tzinfo=UTC)
CONFIG = OperatorConfig(artifact_store="pvc://artifacts")
MAP, REDUCE = "tickets-dataprep-map-g1", "tickets-dataprep-reduce-g1"
DONE = ({"type": "Complete", "status": "True"},)


def manifest(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "kubetune.dev/v1alpha1",
        "kind": "Dataset",
        "metadata": {"name": "tickets", "namespace": "ml", "uid": "uid-1", "generation": 1},
        "spec": {"sources": [{"uri": "pvc://raw/tickets.jsonl"}], **spec},
    }


def dataset(**spec: Any) -> Dataset:
    return Dataset.model_validate(manifest(**spec))


def planned(resource: Dataset, *jobs: ObservedJob) -> Any:
    return plan(resource, ObservedWorld(now=NOW, jobs=jobs), CONFIG)


def job_of(children: list[dict[str, Any]]) -> dict[str, Any]:
    (job,) = [c for c in children if c["kind"] == "Job"]
    return job


def observed(name: str, **fields: Any) -> ObservedJob:
    digest = job_of(planned(dataset(parallelism=3)).children)["metadata"]["annotations"]
    return ObservedJob(name=name, run_id="g1", spec_hash=digest["kubetune.dev/spec-hash"], **fields)


@pytest.mark.parametrize(("value", "why"), [(0, "greater than or equal to 1"), (1025, "1024")])
def test_parallelism_out_of_bounds_is_refused_by_the_api_and_the_crd(value: int, why: str) -> None:
    errors = [str(e) for e in validate_document(manifest(parallelism=value))]
    assert any(e.startswith("spec.parallelism: ") and why in e for e in errors), errors
    crd_errors = validate_against_crd(manifest(parallelism=value))
    assert any(e.startswith("spec.parallelism: ") for e in crd_errors), crd_errors


def test_parallelism_with_several_nodes_is_refused_with_a_clear_message() -> None:
    bad = manifest(parallelism=3, resources={"nodes": 2, "cpu": "2"})
    expected = "resources.nodes must stay 1 when parallelism is above 1"
    assert any(expected in str(e) for e in validate_document(bad))
    assert any(expected in e for e in validate_against_crd(bad))
    assert validate_against_crd(manifest(parallelism=3, resources={"cpu": "2"})) == []


def test_one_task_renders_what_a_dataset_without_parallelism_renders() -> None:
    unset = planned(dataset()).children
    assert planned(dataset(parallelism=1)).children == unset
    job = job_of(unset)
    assert job["metadata"]["name"] == "tickets-dataprep-g1"
    assert "completionMode" not in job["spec"] and "kubetune.dev/stage" not in json.dumps(unset)
    assert "parallelism" not in unset[0]["data"]["spec.json"]
    assert planned(dataset()).status.get("stages") is None


def test_the_map_stage_is_one_indexed_job_writing_beside_the_output() -> None:
    first = planned(dataset(parallelism=3, retry={"backoffLimit": 1}))
    assert [c["kind"] for c in first.children] == ["ConfigMap", "Job"]  # no reduce yet
    job = job_of(first.children)
    spec = job["spec"]
    assert job["metadata"]["name"] == MAP
    assert job["metadata"]["labels"]["kubetune.dev/stage"] == "map"
    assert job["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
    assert spec["completionMode"] == "Indexed"
    assert (spec["completions"], spec["parallelism"], spec["backoffLimitPerIndex"]) == (3, 3, 1)
    assert spec["backoffLimit"] == 3  # bounded overall too
    env = {e["name"]: e.get("value") for e in spec["template"]["spec"]["containers"][0]["env"]}
    index = "metadata.annotations['batch.kubernetes.io/job-completion-index']"
    assert {"name": "JOB_COMPLETION_INDEX", "valueFrom": {"fieldRef": {"fieldPath": index}}} in (
        spec["template"]["spec"]["containers"][0]["env"]
    )
    assert env["KUBETUNE_DATAPREP_SHARDS"] == "pvc://artifacts/ml/dataset/tickets/.g1.shards-g1"
    assert (env["KUBETUNE_DATAPREP_STAGE"], env["KUBETUNE_DATAPREP_TASKS"]) == ("map", "3")
    mounts = spec["template"]["spec"]["containers"][0]["volumeMounts"]
    assert {"name": "pvc-artifacts", "mountPath": "/mnt/pvc/artifacts", "readOnly": False} in mounts
    kubernetes_validate.validate(job, "1.30", strict=True)
    assert first.status["stages"] == [
        {"name": "map", "phase": "NotStarted", "completed": 0, "total": 3, "failed": 0, "job": MAP},
        {
            "name": "reduce",
            "phase": "NotStarted",
            "completed": 0,
            "total": 1,
            "failed": 0,
            "job": REDUCE,
        },
    ]
    assert planned(dataset(parallelism=3, retry={"backoffLimit": 1})).children == first.children


def test_the_reduce_job_comes_only_after_every_map_index_succeeded() -> None:
    resource = dataset(parallelism=3)
    pods = tuple(ObservedPod(f"{MAP}-{i}", "Running") for i in range(3))
    running = planned(resource, observed(MAP, active=1, succeeded=2, pods=pods))
    assert running.children == []
    assert running.status["phase"] == "Running"
    assert running.status["stages"][0]["completed"] == 2
    finished = planned(resource, observed(MAP, succeeded=3, conditions=DONE))
    reduce = job_of(finished.children)
    assert reduce["metadata"]["name"] == REDUCE
    assert "completionMode" not in reduce["spec"]
    assert reduce["metadata"]["labels"]["kubetune.dev/stage"] == "reduce"
    assert finished.status["phase"] == "Running"
    both = planned(resource, observed(MAP, succeeded=3, conditions=DONE), observed(REDUCE))
    assert both.children == []
    assert [s["phase"] for s in both.status["stages"]] == ["Succeeded", "Pending"]
    # The map Job cleaned up by its TTL while the reduce runs: still succeeded, not recreated.
    alone = planned(resource, observed(REDUCE, active=1, pods=(ObservedPod("r", "Running"),)))
    assert alone.children == []
    assert [s["phase"] for s in alone.status["stages"]] == ["Succeeded", "Running"]


def test_kubetune_plan_prints_the_staged_jobs_in_order() -> None:
    result = CliRunner().invoke(
        app, ["plan", "-f", str(REPO / "examples" / "dataset-parallel.yaml")]
    )
    assert result.exit_code == 0, result.output
    objects = [o for o in yaml.safe_load_all(result.stdout) if o]
    names = [(o["kind"], o["metadata"]["name"]) for o in objects]
    base = "support-tickets-parallel-dataprep"
    assert names == [
        ("ConfigMap", f"{base}-map-g1-spec"),
        ("Job", f"{base}-map-g1"),
        ("ConfigMap", f"{base}-reduce-g1-spec"),
        ("Job", f"{base}-reduce-g1"),
    ]
    map_job, reduce_job = objects[1], objects[3]
    assert map_job["spec"]["completionMode"] == "Indexed"
    assert map_job["spec"]["completions"] == 3
    assert "completionMode" not in reduce_job["spec"]
    for job in (map_job, reduce_job):
        kubernetes_validate.validate(job, "1.30", strict=True)
