"""Checkpoints and automatic resume: kill after a checkpoint, restart, same final step count."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("torch")

from kubetune.api.steps import MANIFEST_FILE
from kubetune_workloads.finetune import run
from test_finetune_support import (
    make_dataset,
    metrics,
    results,
    save_base,
    single_thread,  # noqa: F401 - autouse fixture
    step_spec,
    subprocess_env,
)

TOTAL = 600
SPEC = {
    "objective": "continued-pretraining",
    "method": "full",
    "hyperparameters": {"maxSteps": TOTAL, "batchSize": 2, "maxSeqLength": 32, "loggingSteps": 20},
    "checkpointing": {"everySteps": 20, "keepLast": 2},
}


def _launch(spec_file: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "kubetune_workloads", "finetune", "--spec", str(spec_file)],
        env=subprocess_env(KUBETUNE_TERMINATION_LOG=str(spec_file.parent / "termination")),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        text=True,
    )


def _complete_steps(root: Path) -> list[int]:
    if not root.is_dir():
        return []
    return sorted(
        int(p.name.split("-")[1])
        for p in root.glob("checkpoint-*")
        if (p / MANIFEST_FILE).is_file()
    )


def test_killed_run_resumes_from_its_latest_checkpoint(tmp_path: Path) -> None:
    base = save_base(tmp_path / "base")
    data = make_dataset(tmp_path / "data", "text")
    out = tmp_path / "out"
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(step_spec(out, data, base, spec=SPEC).to_json())

    proc = _launch(spec_file)
    deadline = time.monotonic() + 240
    while not _complete_steps(out / "checkpoints") and time.monotonic() < deadline:
        assert proc.poll() is None, "the run ended before its first checkpoint"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    saved = _complete_steps(out / "checkpoints")
    assert saved and saved[-1] < TOTAL
    assert not (out / MANIFEST_FILE).exists()

    proc = _launch(spec_file)
    assert proc.wait(timeout=300) == 0
    summary = results(out)
    assert summary["resumed_from_step"] >= saved[-1]
    assert summary["steps"] == TOTAL
    steps = [m["step"] for m in metrics(out) if "loss" in m]
    assert steps == sorted(set(steps)) and steps[-1] == TOTAL  # one curve, no restarts
    assert len(_complete_steps(out / "checkpoints")) <= 2  # keepLast


def test_half_written_checkpoint_is_ignored(tmp_path: Path) -> None:
    base = save_base(tmp_path / "base")
    data = make_dataset(tmp_path / "data", "text")
    out = tmp_path / "out"
    spec = json.loads(json.dumps(SPEC))
    spec["hyperparameters"]["maxSteps"] = 30
    spec["hyperparameters"]["optimizer"] = "adamw_8bit"  # bitsandbytes state resumes too
    spec["checkpointing"]["everySteps"] = 10
    step = step_spec(out, data, base, spec=spec)
    assert run(step).ok
    done = out / "checkpoints" / "checkpoint-20"
    assert (done / MANIFEST_FILE).is_file()

    # a pod killed while writing checkpoint-25: files, but no manifest
    shutil.copytree(done, out / "checkpoints" / "checkpoint-25")
    (out / "checkpoints" / "checkpoint-25" / MANIFEST_FILE).unlink()
    out2 = tmp_path / "out2"
    shutil.copytree(out / "checkpoints", tmp_path / "ckpt")
    step2 = step_spec(
        out2, data, base, spec=spec, checkpoint_uri="file://" + str(tmp_path / "ckpt")
    )
    assert run(step2).ok
    assert results(out2)["resumed_from_step"] == 20
