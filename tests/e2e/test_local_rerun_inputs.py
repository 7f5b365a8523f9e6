"""`kubetune run` with an unchanged manifest runs a Dataset again when the bytes of its local
input files changed (a new generation, run and version; the old run stays in history), skips
it when they did not, and runs what depends on it again; the version does not depend on the
folder the corpus and manifest lie in."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from test_local_run import kubetune, state, status_of, write

from tests.helpers.tiny import save_tiny_llama

KEY = "Dataset/tickets"


def write_project(root: Path, rows: int = 30, extra: str = "") -> Path:
    """A corpus beside a Dataset manifest that names it by a relative file:// URI."""
    records = [
        {
            "instruction": f"How do I reset password number {i}?",
            "input": "",
            "output": f"Open Settings, then Security, and choose Reset password ({i}).",
        }
        for i in range(rows)
    ]
    write(root / "data" / "tickets.jsonl", "".join(json.dumps(r) + "\n" for r in records))
    return write(
        root / "dataset.yaml",
        """
apiVersion: kubetune.dev/v1alpha1
kind: Dataset
metadata: {name: tickets}
spec:
  sources: [{uri: "file://data/tickets.jsonl"}]
  schema: instruction
  cleaning: {nearDedup: {enabled: false}}
  split: {validationFraction: 0.2}
"""
        + extra,
    )


def edit_one_record(root: Path) -> None:
    """Change one character of one record: the same size, new bytes."""
    data = root / "data" / "tickets.jsonl"
    data.write_text(data.read_text().replace("number 7?", "number 8?", 1))


def run_ok(*args: str) -> str:
    result = kubetune("run", *args, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_changed_local_input_reruns_the_dataset_unchanged_one_skips(tmp_path: Path) -> None:
    manifest = write_project(tmp_path / "a")
    workdir = tmp_path / "work"
    run_ok("-f", str(manifest), "--workdir", str(workdir))
    first = status_of(workdir, KEY)
    assert (first["phase"], first["runId"]) == ("Ready", "g1")
    executions = dict(state(workdir)["executions"])

    out = run_ok("-f", str(manifest), "--workdir", str(workdir))
    assert f"{KEY} unchanged" in out
    assert status_of(workdir, KEY) == first  # nothing ran again
    assert state(workdir)["executions"] == executions

    edit_one_record(tmp_path / "a")
    out = run_ok("-f", str(manifest), "--workdir", str(workdir))
    assert f"{KEY} configured (its local input files changed)" in out
    body = state(workdir)["resources"][KEY]["body"]
    second = body["status"]
    assert body["metadata"]["generation"] == 2
    assert (second["phase"], second["runId"]) == ("Ready", "g2")
    assert second["version"] != first["version"]
    assert [h["runId"] for h in second["history"]] == ["g1"]
    assert Path(first["outputUri"].removeprefix("file://")).is_dir()  # the old artifact stays
    events = [e for e in state(workdir)["events"] if e["reason"] == "InputsChanged"]
    assert [e["object"] for e in events] == [KEY]
    assert "changed since run g1" in events[0]["message"]

    # The same corpus and manifest in another folder: the same version (URIs name that folder).
    shutil.copytree(tmp_path / "a", tmp_path / "b" / "moved")

    # A corpus that is gone is no reason to prepare it again: the finished run stands.
    (tmp_path / "a" / "data" / "tickets.jsonl").unlink()
    out = run_ok("-f", str(manifest), "--workdir", str(workdir))
    assert f"{KEY} unchanged" in out
    assert status_of(workdir, KEY) == second
    elsewhere = tmp_path / "work-b"
    run_ok("-f", str(tmp_path / "b" / "moved" / "dataset.yaml"), "--workdir", str(elsewhere))
    moved = status_of(elsewhere, KEY)
    assert moved["version"] == second["version"]
    artifact = Path(moved["outputUri"].removeprefix("file://"))
    inputs = json.loads((artifact / "kubetune-manifest.json").read_text())["inputs"]
    assert [i["uri"] for i in inputs] == [f"file://{tmp_path}/b/moved/data/tickets.jsonl"]

    # `touch` forces a rerun, like make; the same bytes give the same version.
    (tmp_path / "b" / "moved" / "data" / "tickets.jsonl").touch()
    run_ok("-f", str(tmp_path / "b" / "moved" / "dataset.yaml"), "--workdir", str(elsewhere))
    touched = status_of(elsewhere, KEY)
    assert (touched["runId"], touched["version"]) == ("g2", moved["version"])


def test_what_depends_on_the_dataset_runs_again_on_the_new_version(tmp_path: Path) -> None:
    model = save_tiny_llama(tmp_path / "model")
    evaluation = f"""---
apiVersion: kubetune.dev/v1alpha1
kind: Evaluation
metadata: {{name: check}}
spec:
  candidate: {{uri: "file://{model}"}}
  prompts: {{dataset: {{name: tickets}}, limit: 2}}
  metrics: [{{name: exactMatch}}]
  generation: {{maxNewTokens: 2}}
  bootstrapSamples: 10
"""
    manifest = write_project(tmp_path / "p", extra=evaluation)
    workdir = tmp_path / "work"
    run_ok("-f", str(manifest), "--workdir", str(workdir))
    before: dict[str, Any] = status_of(workdir, "Evaluation/check")
    assert before["phase"] == "Succeeded"

    edit_one_record(tmp_path / "p")
    run_ok("-f", str(manifest), "--workdir", str(workdir))
    dataset = status_of(workdir, KEY)
    after = status_of(workdir, "Evaluation/check")
    assert dataset["runId"] == "g2"
    assert after["phase"] == "Succeeded"
    assert after["runId"] != before["runId"]  # the same generation, run again on new inputs
    report = Path(after["outputUri"].removeprefix("file://")) / "kubetune-manifest.json"
    versions = [i.get("version") for i in json.loads(report.read_text())["inputs"]]
    assert dataset["version"] in versions


def test_a_failed_dataset_runs_again_once_its_input_is_fixed(tmp_path: Path) -> None:
    manifest = write_project(tmp_path / "p", rows=10)
    data = tmp_path / "p" / "data" / "tickets.jsonl"
    good = data.read_text()
    data.write_text(good + "{broken\n" * 5)  # 5 of 15 malformed: above maxErrorRatio
    workdir = tmp_path / "work"
    failed = kubetune("run", "-f", str(manifest), "--workdir", str(workdir), timeout=300)
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert status_of(workdir, KEY)["phase"] == "Failed"
    again = kubetune("run", "-f", str(manifest), "--workdir", str(workdir), timeout=300)
    assert again.returncode == 1  # the same input: the failed run stands, nothing reruns
    assert status_of(workdir, KEY)["runId"] == "g1"

    data.write_text(good)
    run_ok("-f", str(manifest), "--workdir", str(workdir))
    fixed = status_of(workdir, KEY)
    assert (fixed["phase"], fixed["runId"], fixed["records"]) == ("Ready", "g2", 10)
    assert [(h["runId"], h["phase"]) for h in fixed["history"]] == [("g1", "Failed")]
