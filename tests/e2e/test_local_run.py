"""`kubetune run` end to end: the real CLI, the real planners, real workload processes."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
QUICKSTART = REPO / "examples" / "quickstart"


def kubetune(*args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kubetune.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
        env={**os.environ, "COLUMNS": "200"},
    )


def state(workdir: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((workdir / "state.json").read_text())
    return data


def status_of(workdir: Path, key: str) -> dict[str, Any]:
    result: dict[str, Any] = state(workdir)["resources"][key]["body"].get("status") or {}
    return result


def condition(status: dict[str, Any], type_: str) -> dict[str, Any]:
    found = [c for c in status.get("conditions", []) if c["type"] == type_]
    assert found, f"no {type_} condition in {status}"
    return found[0]


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_invalid_manifests_stop_before_anything_runs(tmp_path: Path) -> None:
    manifests = tmp_path / "m"
    write(
        manifests / "good.yaml",
        """
apiVersion: kubetune.dev/v1alpha1
kind: Dataset
metadata: {name: fine}
spec:
  sources: [{uri: "file://data.jsonl"}]
""",
    )
    write(
        manifests / "bad.yaml",
        """
apiVersion: kubetune.dev/v1alpha1
kind: FinetuneJob
metadata: {name: broken}
spec:
  model: {base: {uri: "hf://org/model"}}
  dataset: {name: fine}
  method: qlora
  lora: {r: 8}
  quantization: {bits: 8}
  hyperparameters: {maxSteps: 10}
""",
    )
    workdir = tmp_path / "work"
    result = kubetune("run", "-f", str(manifests), "--workdir", str(workdir))
    assert result.returncode == 1
    assert "spec.quantization.bits" in result.stderr
    assert "qlora requires 4-bit quantization" in result.stderr
    assert "nothing was run" in result.stderr
    assert not (workdir / "state.json").exists()


def test_failed_step_shows_reason_and_log_and_dependents_wait(tmp_path: Path) -> None:
    manifests = write(
        tmp_path / "pipeline.yaml",
        """
apiVersion: kubetune.dev/v1alpha1
kind: Dataset
metadata: {name: missing-data}
spec:
  sources: [{uri: "file://does-not-exist.jsonl"}]
  schema: instruction
---
apiVersion: kubetune.dev/v1alpha1
kind: FinetuneJob
metadata: {name: tune}
spec:
  model: {architecture: {family: gru, layers: 1, hiddenSize: 32}}
  dataset: {name: missing-data}
  method: full
  hyperparameters: {maxSteps: 5}
""",
    )
    workdir = tmp_path / "work"
    result = kubetune("run", "-f", str(manifests), "--workdir", str(workdir))
    assert result.returncode == 1, result.stdout + result.stderr
    dataset = status_of(workdir, "Dataset/missing-data")
    assert dataset["phase"] == "Failed"
    ready = condition(dataset, "Ready")
    assert ready["status"] == "False"
    assert "does-not-exist.jsonl" in ready["message"]
    log_path = dataset.get("logPath") or ""
    assert "log:" in result.stdout
    tune = status_of(workdir, "FinetuneJob/tune")
    assert tune["phase"] == "Waiting"
    waiting = condition(tune, "Waiting")
    assert waiting["reason"] == "DatasetFailed"
    assert "missing-data" in waiting["message"]
    # Nothing was started for the dependent.
    assert not any(job.startswith("tune-") for job in state(workdir)["executions"])
    if log_path:
        assert Path(log_path).is_file()


def _tiny_pipeline(tmp_path: Path, steps: int, every: int) -> Path:
    lines = [
        {"instruction": f"How do I reset password number {i}?", "input": "",
         "output": "Open Settings, then Security, and choose Reset password."}
        for i in range(40)
    ]  # fmt: skip
    data = tmp_path / "m" / "tickets.jsonl"
    data.parent.mkdir(parents=True, exist_ok=True)
    data.write_text("\n".join(json.dumps(r) for r in lines) + "\n")
    return write(
        tmp_path / "m" / "pipeline.yaml",
        f"""
apiVersion: kubetune.dev/v1alpha1
kind: Dataset
metadata: {{name: tickets}}
spec:
  sources: [{{uri: "file://tickets.jsonl"}}]
  schema: instruction
  cleaning: {{exactDedup: false, nearDedup: {{enabled: false}}, quality: {{enabled: false}}}}
  tokenizer: {{train: {{type: char}}}}
  split: {{validationFraction: 0.1}}
---
apiVersion: kubetune.dev/v1alpha1
kind: FinetuneJob
metadata: {{name: tune}}
spec:
  model: {{architecture: {{family: llama, layers: 2, hiddenSize: 64, heads: 4,
                            contextLength: 256}}}}
  dataset: {{name: tickets}}
  objective: instruction
  method: full
  hyperparameters: {{maxSteps: {steps}, batchSize: 4, maxSeqLength: 128, loggingSteps: 1}}
  checkpointing: {{everySteps: {every}, keepLast: 2}}
""",
    )


def test_interrupt_then_resume_without_redoing_steps(tmp_path: Path) -> None:
    manifests = _tiny_pipeline(tmp_path, steps=400, every=20)
    workdir = tmp_path / "work"
    proc = subprocess.Popen(
        [sys.executable, "-m", "kubetune.cli", "run", "-f", str(manifests), "--workdir",
         str(workdir)],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    # SIGINT once the run reports a step past the first checkpoint (20): the progress line
    # comes right after it is written, with most of the 400 steps still to go. (Watching the
    # files for it raced: on a loaded machine the run once ended before the poll saw one.)
    lines: list[str] = []
    past_checkpoint = threading.Event()

    def read_output() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            found = re.search(r"FinetuneJob/tune Running: step (\d+)/400", line)
            if found and int(found.group(1)) > 20:
                past_checkpoint.set()

    reader = threading.Thread(target=read_output, daemon=True)
    reader.start()
    try:
        if not past_checkpoint.wait(timeout=600):
            pytest.fail("training never passed its first checkpoint:\n" + "".join(lines))
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
        reader.join(timeout=30)
    out = "".join(lines)
    assert proc.returncode == 130, out
    assert "rerun the same command to resume" in out
    first = state(workdir)
    assert first["resources"]["Dataset/tickets"]["body"]["status"]["phase"] == "Ready"
    dataset_runs = [k for k in first["executions"] if k.startswith("tickets-")]
    assert len(dataset_runs) == 1

    result = kubetune("run", "-f", str(manifests), "--workdir", str(workdir))
    assert result.returncode == 0, result.stdout + result.stderr
    second = state(workdir)
    # The Dataset was not prepared again: same single execution, same start time.
    assert [k for k in second["executions"] if k.startswith("tickets-")] == dataset_runs
    assert (
        second["executions"][dataset_runs[0]]["started"]
        == first["executions"][dataset_runs[0]]["started"]
    )
    tune = status_of(workdir, "FinetuneJob/tune")
    assert tune["phase"] == "Succeeded"
    log = next((workdir / "logs").glob("tune-*.log")).read_text()
    assert "resum" in log.lower()
    output = Path(tune["outputUri"].removeprefix("file://"))
    results = json.loads((output / "results.json").read_text())
    assert results["steps"] == 400  # the resumed run ends at the planned step, not beyond

    # Re-running the finished pipeline changes nothing and starts nothing.
    again = kubetune("run", "-f", str(manifests), "--workdir", str(workdir))
    assert again.returncode == 0
    assert state(workdir)["executions"].keys() == second["executions"].keys()
    status = kubetune("status", "--workdir", str(workdir))
    assert status.returncode == 0
    assert "finetunejobs.kubetune.dev" in status.stdout and "Succeeded" in status.stdout


@pytest.mark.slow
def test_quickstart_runs_end_to_end(tmp_path: Path) -> None:
    workdir = tmp_path / "quickstart"
    shutil.rmtree(workdir, ignore_errors=True)
    result = kubetune("run", "-f", str(QUICKSTART), "--workdir", str(workdir), timeout=1500)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    for key, expected in {
        "Dataset/general-corpus": "Ready",
        "Dataset/support-tickets": "Ready",
        "FinetuneJob/base-model": "Succeeded",
        "FinetuneJob/support-assistant": "Succeeded",
        "Compression/support-assistant-nf4": "Succeeded",
        "Evaluation/support-assistant-eval": "Succeeded",
    }.items():
        assert status_of(workdir, key)["phase"] == expected, (key, status_of(workdir, key))
    tickets = status_of(workdir, "Dataset/support-tickets")
    assert tickets["records"] > 0 and tickets["version"]
    assert tickets["stageCounts"], "the messy corpus must lose records in cleaning stages"
    evaluation = status_of(workdir, "Evaluation/support-assistant-eval")
    assert evaluation["passed"] is True
    assert condition(evaluation, "Passed")["status"] == "True"
    results = evaluation["results"]
    assert results["rougeLDelta"] > 0, results  # the tuned model beats its base
    assert Path(evaluation["reportUri"].removeprefix("file://")).is_file()
    compression = status_of(workdir, "Compression/support-assistant-nf4")
    assert compression["sizeRatio"] < 1
    assert "report:" in result.stdout
