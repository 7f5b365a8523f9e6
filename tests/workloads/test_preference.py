"""Objective preference through the finetune step: it learns a preference (held-out), reports
reward accuracy and margins, runs with LoRA, QLoRA and KTO, resumes exactly, refuses bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("torch")

import torch
from kubetune_workloads import modelio
from kubetune_workloads.errors import WorkloadError
from kubetune_workloads.finetune import run
from kubetune_workloads.finetune.preference_data import tokenize
from test_finetune_support import (
    make_dataset,
    metrics,
    results,
    save_base,
    single_thread,  # noqa: F401 - autouse fixture
    step_spec,
)
from test_preference_support import color_pairs, preference_dataset


def _spec(algorithm: str = "dpo", method: str = "full", **hp: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "objective": "preference",
        "method": method,
        "preference": {"algorithm": algorithm, "beta": 0.5},
        "hyperparameters": {"maxSteps": 20, "learningRate": 2e-2, "batchSize": 8, **hp},
    }
    if method != "full":
        spec["lora"] = {"r": 8, "alpha": 16, "dropout": 0.1}
    if method == "qlora":
        spec["quantization"] = {"bits": 4, "computeDtype": "fp32"}
    return spec


def _prefers_chosen(model_uri: str, pairs: list[dict[str, Any]]) -> float:
    """Fraction of pairs whose chosen answer the model finds more likely than the rejected."""
    loaded = modelio.load_model(model_uri, dtype="fp32")
    examples = tokenize(pairs, loaded.tokenizer, 128).examples
    wins = 0
    with torch.no_grad():
        for ex in examples:
            scores = []
            for seq in (ex.input_ids, ex.rejected):  # type: ignore[attr-defined]
                ids = torch.tensor([seq])
                logps = torch.log_softmax(loaded.model(input_ids=ids).logits[0, :-1], -1)
                picked = logps.gather(-1, ids[0, 1:, None]).squeeze(-1)
                scores.append(float(picked[ex.prompt_len - 1 :].sum()))  # type: ignore[attr-defined]
            wins += scores[0] > scores[1]
    return wins / len(examples)


def test_dpo_learns_the_preference_on_held_out_pairs(tmp_path: Path) -> None:
    base = save_base(tmp_path / "base")
    data = preference_dataset(tmp_path / "data")
    held_out = color_pairs(32, seed=2)
    before = _prefers_chosen(base, held_out)
    spec = _spec(maxSteps=100, loggingSteps=10)
    spec["evaluation"] = {"everySteps": 50}
    result = run(step_spec(tmp_path / "out", data, base, spec=spec))
    assert result.ok
    after = _prefers_chosen("file://" + str(tmp_path / "out"), held_out)
    assert 0.2 <= before <= 0.8 and after >= 0.9, (before, after)
    summary = results(tmp_path / "out")
    assert summary["eval_reward_accuracy"] >= 0.9
    assert summary["eval_reward_margin"] > 0 and "eval_perplexity" not in summary
    assert result.metrics["evalRewardAccuracy"] == summary["eval_reward_accuracy"]
    assert result.metrics["rewardMargin"] > 0
    logged = [m for m in metrics(tmp_path / "out") if "reward_accuracy" in m]
    assert logged and logged[0]["step"] == 1 and logged[0]["loss"] == pytest.approx(0.6931, 1e-3)


@pytest.mark.parametrize(("algorithm", "method"), [("ipo", "lora"), ("orpo", "qlora")])
def test_adapters_train_with_reference_and_reference_free_losses(
    tmp_path: Path, algorithm: str, method: str
) -> None:
    base = save_base(tmp_path / "base")
    data = preference_dataset(tmp_path / "data", n_train=32, n_val=8)
    out = tmp_path / "out"
    result = run(step_spec(out, data, base, spec=_spec(algorithm, method, maxSteps=10)))
    assert result.ok and result.details["format"] == "adapter"
    losses = [m["loss"] for m in metrics(out) if "loss" in m]
    assert losses[-1] < losses[0]
    assert "eval_reward_accuracy" in results(out)


def test_kto_trains_on_unpaired_feedback(tmp_path: Path) -> None:
    base = save_base(tmp_path / "base")
    data = preference_dataset(tmp_path / "data", n_train=32, n_val=8, kto=True)
    out = tmp_path / "out"
    result = run(step_spec(out, data, base, spec=_spec("kto", "lora", maxSteps=15)))
    assert result.ok
    lines = [m for m in metrics(out) if "loss" in m]
    assert lines[0]["loss"] == pytest.approx(0.5, abs=1e-4)  # 1 - sigmoid(0) before any step
    assert lines[-1]["loss"] < lines[0]["loss"]
    assert lines[-1]["reward_chosen"] > lines[-1]["reward_rejected"]


def test_resumed_dpo_run_equals_an_uninterrupted_one(tmp_path: Path) -> None:
    base = save_base(tmp_path / "base")
    data = preference_dataset(tmp_path / "data", n_train=32, n_val=8)
    spec = _spec(maxSteps=12, loggingSteps=1)
    spec["checkpointing"] = {"everySteps": 6}
    whole = tmp_path / "whole"
    assert run(step_spec(whole, data, base, spec=spec, checkpoint_uri=f"file://{tmp_path}/ck")).ok
    kept = tmp_path / "ck-resume"
    kept.mkdir()
    shutil.copytree(tmp_path / "ck" / "checkpoint-6", kept / "checkpoint-6")
    resumed = tmp_path / "resumed"
    result = run(step_spec(resumed, data, base, spec=spec, checkpoint_uri=f"file://{kept}"))
    assert result.details["resumedFromStep"] == 6
    ours = {m["step"]: m["loss"] for m in metrics(resumed) if "loss" in m}
    theirs = {m["step"]: m["loss"] for m in metrics(whole) if "loss" in m}
    assert ours == pytest.approx(theirs, rel=1e-5) and max(ours) == 12
    weights = [modelio.load_model("file://" + str(p), dtype="fp32").model for p in (whole, resumed)]
    for a, b in zip(weights[0].parameters(), weights[1].parameters(), strict=True):
        assert torch.allclose(a, b, atol=1e-6)


def test_preference_objective_on_an_instruction_dataset_is_refused(tmp_path: Path) -> None:
    base = save_base(tmp_path / "base")
    data = make_dataset(tmp_path / "data", "instruction")
    with pytest.raises(WorkloadError, match=r"schema preference.*has schema instruction"):
        run(step_spec(tmp_path / "out", data, base, spec=_spec()))


def test_kto_on_pairs_is_refused_with_a_hint(tmp_path: Path) -> None:
    base = save_base(tmp_path / "base")
    data = preference_dataset(tmp_path / "data", n_train=8, n_val=0)
    with pytest.raises(WorkloadError, match=r"kto needs completion \+ label.*kto reads unpaired"):
        run(step_spec(tmp_path / "out", data, base, spec=_spec("kto", "lora")))


def test_the_api_ties_objective_preference_to_preference_settings() -> None:
    from kubetune.api.finetune import FinetuneJobSpec
    from pydantic import ValidationError

    body = {"model": {"base": {"uri": "file:///m"}}, "dataset": {"uri": "file:///d"}}
    with pytest.raises(ValidationError, match="objective preference needs preference settings"):
        FinetuneJobSpec.model_validate({**body, "objective": "preference", "method": "full"})
    with pytest.raises(ValidationError, match="cannot be packed"):
        FinetuneJobSpec.model_validate(
            {**body, **_spec(), "hyperparameters": {"maxSteps": 5, "packing": True}}
        )
    parsed = FinetuneJobSpec.model_validate({**body, **_spec("simpo")})
    assert parsed.preference is not None and parsed.preference.simpo_gamma == 0.5
    assert json.loads(parsed.model_dump_json(by_alias=True))["preference"]["simpoGamma"] == 0.5


def test_evaluation_gates_on_held_out_preference_accuracy(tmp_path: Path) -> None:
    from kubetune_workloads.evaluate import run as evaluate

    from tests.workloads.eval_fixtures.specs import step_spec as eval_spec

    base = save_base(tmp_path / "base")
    data = preference_dataset(tmp_path / "data")
    spec = _spec(maxSteps=100, loggingSteps=50)
    assert run(step_spec(tmp_path / "tuned", data, base, spec=spec)).ok
    gates = [
        {"metric": "preferenceAccuracy", "min": 0.9},
        {"metric": "preferenceAccuracy", "maxRegression": 0.0},
    ]
    step = eval_spec(
        tmp_path / "eval",
        f"file://{tmp_path}/tuned",
        baseline=base,
        cases=[{"prompt": "What color is the sky?"}],
        metrics=["preferenceAccuracy"],
        spec={"preferenceData": {"uri": data}, "gates": gates},
        preferenceDataset={"uri": data},
    )
    result = evaluate(step)
    assert result.ok and result.passed, result.message
    assert result.metrics["preferenceAccuracy"] >= 0.9
    compared = json.loads((tmp_path / "eval" / "results.json").read_text())["comparison"]
    assert compared["preferenceAccuracy"]["ciLow"] > 0  # beyond the bootstrap noise
    swapped = eval_spec(
        tmp_path / "eval-base",
        base,
        baseline=f"file://{tmp_path}/tuned",
        cases=[{"prompt": "What color is the sky?"}],
        metrics=["preferenceAccuracy"],
        spec={"preferenceData": {"uri": data}, "gates": gates},
    )
    failed = evaluate(swapped)
    assert failed.passed is False and "preferenceAccuracy>=0.9" in (failed.failed_gates or [])
