"""`kubetune run` of a parallel Dataset (examples/dataset-parallel.yaml): the map stage's 3
tasks run as local processes, then the reduce; the artifact and version are those of the same
Dataset with parallelism 1."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "dataset-parallel.yaml"
KEY = "Dataset/support-tickets-parallel"


def kubetune(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kubetune.cli", *args],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=REPO,
        env={**os.environ, "COLUMNS": "200"},
    )


def state(workdir: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((workdir / "state.json").read_text())
    return data


def one_task_copy(target: Path) -> Path:
    """The example with parallelism unset (one pod), its file:// URIs made absolute."""
    doc = yaml.safe_load(EXAMPLE.read_text())
    del doc["spec"]["parallelism"]
    base = EXAMPLE.parent

    def absolute(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: absolute(v) for k, v in value.items()}
        if isinstance(value, list):
            return [absolute(v) for v in value]
        if isinstance(value, str) and value.startswith("file://") and "///" not in value:
            return "file://" + str((base / value[len("file://") :]).resolve())
        return value

    target.write_text(yaml.safe_dump(absolute(doc)))
    return target


def test_parallel_dataset_runs_map_processes_then_reduce_with_the_one_task_version(
    tmp_path: Path,
) -> None:
    staged, single = tmp_path / "staged", tmp_path / "single"
    ran = kubetune("run", "-f", str(EXAMPLE), "--workdir", str(staged))
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "3 pods requested: running as local processes" in ran.stdout
    body = state(staged)["resources"][KEY]["body"]
    status = body["status"]
    assert status["phase"] == "Ready"
    assert [(s["name"], s["phase"], s["completed"], s["total"]) for s in status["stages"]] == [
        ("map", "Succeeded", 3, 3),
        ("reduce", "Succeeded", 1, 1),
    ]
    executions = state(staged)["executions"]
    map_run = executions["support-tickets-parallel-dataprep-map-g1"]
    mapped = json.loads(map_run["termination_message"])
    assert mapped["details"] == {"stage": "map", "ranks": [0, 1, 2], "tasks": 3}
    assert "support-tickets-parallel-dataprep-reduce-g1" in executions
    artifact = Path(status["outputUri"].removeprefix("file://"))
    assert not list(artifact.parent.glob(".*shards*"))  # removed once the artifact is written

    ran = kubetune("run", "-f", str(one_task_copy(tmp_path / "one.yaml")), "--workdir", str(single))
    assert ran.returncode == 0, ran.stdout + ran.stderr
    one = state(single)["resources"][KEY]["body"]["status"]
    assert one.get("stages") is None
    assert (one["version"], one["records"]) == (status["version"], status["records"])
    assert one["artifactHash"] == status["artifactHash"]
    one_artifact = Path(one["outputUri"].removeprefix("file://"))
    for name in ("train.jsonl", "validation.jsonl", "stats.json", "dataset.json"):
        assert (artifact / name).read_bytes() == (one_artifact / name).read_bytes(), name
