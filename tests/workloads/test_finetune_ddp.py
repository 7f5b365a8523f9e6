"""Data-parallel training: ``torchrun --nproc_per_node 2`` on CPU (gloo), DDP and FSDP."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")

from kubetune.api.steps import parse_step_result
from kubetune_workloads.manifest import read_manifest
from kubetune_workloads.modelio import load_model
from test_finetune_support import (
    make_dataset,
    results,
    save_base,
    step_spec,
    subprocess_env,
    train_losses,
)

STEPS = 12


def _torchrun(tmp_path: Path, spec: dict) -> tuple[Path, subprocess.CompletedProcess[str]]:
    base = save_base(tmp_path / "base")
    data = make_dataset(tmp_path / "data", "instruction")
    out = tmp_path / "out"
    spec_file, termination = tmp_path / "spec.json", tmp_path / "termination"
    spec_file.write_text(step_spec(out, data, base, spec=spec).to_json())
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    command += ["--nproc_per_node", "2", "-m", "kubetune_workloads", "finetune"]
    proc = subprocess.run(
        [*command, "--spec", str(spec_file)],
        env=subprocess_env(KUBETUNE_TERMINATION_LOG=str(termination)),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = parse_step_result(termination.read_text())
    assert result is not None and result.ok and result.details["totalSteps"] == STEPS
    return out, proc


@pytest.mark.parametrize(
    ("strategy", "method"),
    [("ddp", {"method": "lora", "lora": {"r": 8}}), ("fsdp", {"method": "full"})],
)
def test_two_process_torchrun(tmp_path: Path, strategy: str, method: dict) -> None:
    spec = {
        "objective": "instruction",
        **method,
        "distributed": {"strategy": strategy},
        "hyperparameters": {"maxSteps": STEPS, "batchSize": 4, "learningRate": 3e-2},
    }
    out, proc = _torchrun(tmp_path, spec)
    summary = results(out)
    assert summary["world_size"] == 2 and summary["steps"] == STEPS
    assert proc.stdout.count("KUBETUNE_RESULT") == 2  # both ranks report rank 0's result
    assert read_manifest(out) is not None
    assert train_losses(out)[-1] < train_losses(out)[0]
    loaded = load_model("file://" + str(out))  # one artifact, written once, loads
    assert loaded.model is not None
