"""Preemption and divergence: a SIGTERM mid-epoch checkpoints and resumes to the same weights;
an exploding loss fails with ``Diverged`` (or rolls back) instead of succeeding."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("torch")

from kubetune.api.steps import MANIFEST_FILE
from test_finetune_support import (
    make_dataset,
    results,
    save_base,
    single_thread,  # noqa: F401 - autouse fixture
    step_spec,
    subprocess_env,
)

TOTAL = 120
SPEC: dict[str, Any] = {
    "objective": "continued-pretraining",
    "method": "full",
    "hyperparameters": {"maxSteps": TOTAL, "batchSize": 2, "maxSeqLength": 32, "loggingSteps": 1},
}


def _launch(spec_file: Path) -> subprocess.Popen[str]:
    run_dir = spec_file.parent
    return subprocess.Popen(
        [sys.executable, "-m", "kubetune_workloads", "finetune", "--spec", str(spec_file)],
        env=subprocess_env(
            KUBETUNE_TERMINATION_LOG=str(run_dir / "termination"),
            KUBETUNE_PROGRESS_FILE=str(run_dir / "progress.json"),
        ),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        text=True,
    )


def _termination(run_dir: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((run_dir / "termination").read_text())
    return data


def _weights(out: Path) -> dict[str, Any]:
    from safetensors.torch import load_file

    return load_file(str(out / "model.safetensors"))


def _progress_step(run_dir: Path) -> int:
    try:
        return int(json.loads((run_dir / "progress.json").read_text()).get("step") or 0)
    except (OSError, ValueError):
        return 0


def test_sigterm_mid_epoch_checkpoints_and_resumes_to_the_same_weights(tmp_path: Path) -> None:
    import torch

    base = save_base(tmp_path / "base")
    data = make_dataset(tmp_path / "data", "text")
    runs = {}
    for name in ("straight", "preempted"):
        (tmp_path / name).mkdir()
        spec_file = tmp_path / name / "spec.json"
        spec_file.write_text(step_spec(tmp_path / name / "out", data, base, spec=SPEC).to_json())
        runs[name] = spec_file

    assert _launch(runs["straight"]).wait(timeout=300) == 0

    run_dir = runs["preempted"].parent
    out = run_dir / "out"
    proc = _launch(runs["preempted"])
    deadline = time.monotonic() + 240
    while _progress_step(run_dir) < 10 and time.monotonic() < deadline:
        assert proc.poll() is None, "the run ended before it could be preempted"
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)  # no periodic checkpoint configured: only the grace one
    assert proc.wait(timeout=120) == 1  # retryable: the Job's next pod resumes
    result = _termination(run_dir)
    assert result["reason"] == "Preempted", result
    saved = sorted(int(p.name.split("-")[1]) for p in (out / "checkpoints").glob("checkpoint-*"))
    assert len(saved) == 1 and 10 <= saved[0] < TOTAL, saved
    assert (out / "checkpoints" / f"checkpoint-{saved[0]}" / MANIFEST_FILE).is_file()
    assert f"checkpoint-{saved[0]}" in result["message"]
    assert not (out / MANIFEST_FILE).exists()

    assert _launch(runs["preempted"]).wait(timeout=300) == 0
    assert results(out)["resumed_from_step"] == saved[0]
    assert results(out)["steps"] == TOTAL
    straight, resumed = _weights(runs["straight"].parent / "out"), _weights(out)
    assert straight.keys() == resumed.keys()
    for key in straight:
        assert torch.equal(straight[key], resumed[key]), key


def _run_once(tmp_path: Path, spec: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    base = save_base(tmp_path / "base")
    data = make_dataset(tmp_path / "data", "text")
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(step_spec(tmp_path / "out", data, base, spec=spec).to_json())
    code = _launch(spec_file).wait(timeout=300)
    return code, _termination(tmp_path)


DIVERGING = {
    "objective": "continued-pretraining",
    "method": "full",
    "hyperparameters": {"maxSteps": 40, "learningRate": 1.0, "batchSize": 4, "maxSeqLength": 32,
                        "loggingSteps": 1},
    "evaluation": {"everySteps": 20},
}  # fmt: skip


def test_an_exploding_loss_fails_with_diverged_naming_step_and_values(tmp_path: Path) -> None:
    code, result = _run_once(tmp_path, DIVERGING)
    assert code == 2, result  # permanent: the same spec diverges again
    assert result["reason"] == "Diverged"
    message = result["message"]
    assert "at step" in message and "reference" in message and "learning rate" in message
    assert not (tmp_path / "out" / MANIFEST_FILE).exists()


def test_divergence_rollback_restores_the_last_good_checkpoint_with_a_lower_lr(
    tmp_path: Path,
) -> None:
    spec = {
        **DIVERGING,
        "checkpointing": {"everySteps": 1, "keepLast": 2},
        "divergence": {"lossFactor": 2.0, "patience": 2, "rollback": True,
                       "rollbackLrFactor": 0.01, "maxRollbacks": 1},
    }  # fmt: skip
    code, result = _run_once(tmp_path, spec)
    assert code == 0, result
    rollbacks = result["details"]["rollbacks"]
    assert len(rollbacks) == 1 and rollbacks[0]["learningRateScale"] == pytest.approx(0.01)
    assert rollbacks[0]["toStep"] < rollbacks[0]["atStep"]
    assert result["metrics"]["rollbacks"] == 1
    summary = results(tmp_path / "out")
    assert summary["rollbacks"] == rollbacks and summary["steps"] == 40
    assert summary["train_loss"] < 6.0  # trained on from the healthy weights


def test_a_second_trainer_on_the_same_output_refuses_to_start(tmp_path: Path) -> None:
    base = save_base(tmp_path / "base")
    data = make_dataset(tmp_path / "data", "text")
    spec = {**SPEC, "hyperparameters": {**SPEC["hyperparameters"], "maxSteps": 5000}}
    first_dir, second_dir = tmp_path / "first", tmp_path / "second"
    for run_dir in (first_dir, second_dir):
        run_dir.mkdir()
        (run_dir / "spec.json").write_text(
            step_spec(tmp_path / "out", data, base, spec=spec).to_json()
        )
    first = _launch(first_dir / "spec.json")
    try:
        deadline = time.monotonic() + 240
        while _progress_step(first_dir) < 1 and time.monotonic() < deadline:
            assert first.poll() is None
            time.sleep(0.05)
        second = _launch(second_dir / "spec.json")
        assert second.wait(timeout=120) == 1  # retryable: it may start once the holder is gone
        result = _termination(second_dir)
        assert result["reason"] == "OutputLocked"
        assert f'"pid": {first.pid}' in result["message"]
        assert first.poll() is None  # the first writer trains on undisturbed
    finally:
        first.send_signal(signal.SIGTERM)
        first.wait(timeout=60)


def test_the_training_job_gets_a_grace_period_for_its_checkpoint(tmp_path: Path) -> None:
    import yaml

    manifest = tmp_path / "ftj.yaml"
    body = """
apiVersion: kubetune.dev/v1alpha1
kind: FinetuneJob
metadata: {name: tune}
spec:
  model: {architecture: {family: gru, layers: 1, hiddenSize: 32}}
  dataset: {uri: "s3://bucket/data"}
  method: full
  hyperparameters: {maxSteps: 5}
"""
    grace = {}
    for name, extra in (
        ("default", ""),
        ("custom", "  checkpointing: {gracePeriodSeconds: 900}\n"),
    ):
        manifest.write_text(body + extra)
        out = subprocess.run(
            [sys.executable, "-m", "kubetune.cli", "plan", "-f", str(manifest)],
            capture_output=True, text=True, timeout=120, check=True,
        )  # fmt: skip
        job = next(d for d in yaml.safe_load_all(out.stdout) if d and d["kind"] == "Job")
        grace[name] = job["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace == {"default": 300, "custom": 900}


def test_an_exploding_eval_loss_fails_with_diverged(tmp_path: Path) -> None:
    spec = {
        **DIVERGING,
        "evaluation": {"everySteps": 5},
        "divergence": {"patience": 1000, "evalFactor": 1.5},  # only the eval check can fire
    }
    code, result = _run_once(tmp_path, spec)
    assert (code, result["reason"]) == (2, "Diverged"), result
    assert "the evaluation loss exploded at step 5:" in result["message"]
    assert "uniform guess" in result["message"]
