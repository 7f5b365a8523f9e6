"""Finetune options beyond the basics: DoRA/rsLoRA, 8-bit optimizers, gradient checkpointing,
early stopping, and from-scratch GPT-2 and Qwen2 designs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("peft")

from kubetune_workloads.finetune import run  # noqa: E402
from kubetune_workloads.modelio import load_model, read_info  # noqa: E402
from test_finetune_support import (  # noqa: E402
    make_dataset,
    metrics,
    results,
    save_base,
    single_thread,  # noqa: F401 - autouse fixture
    step_spec,
    train_losses,
)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("options")
    return {
        "base": save_base(root / "base"),
        "instruction": make_dataset(root / "ds-instruction", "instruction"),
        "text": make_dataset(root / "ds-text", "text"),
    }


@pytest.mark.parametrize(
    ("lora", "optimizer"),
    [
        ({"r": 8, "alpha": 16, "useDora": True}, "adamw"),
        ({"r": 8, "alpha": 16, "useRslora": True}, "adamw_8bit"),
    ],
    ids=["dora", "rslora-adamw8bit"],
)
def test_lora_variants_and_8bit_optimizer_train(
    world: dict[str, str], lora: dict[str, object], optimizer: str, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    spec = {
        "objective": "instruction",
        "method": "lora",
        "lora": lora,
        "hyperparameters": {"learningRate": 3e-2, "batchSize": 4, "optimizer": optimizer},
    }
    result = run(step_spec(out, world["instruction"], world["base"], spec=spec))
    assert result.ok, result.message
    losses = train_losses(out)
    assert losses[-1] < losses[0] - 0.15, losses
    adapter = json.loads((out / "adapter_config.json").read_text())
    assert adapter["use_dora"] is bool(lora.get("useDora"))
    assert adapter["use_rslora"] is bool(lora.get("useRslora"))


def test_gradient_checkpointing_trains_to_the_same_result(
    world: dict[str, str], tmp_path: Path
) -> None:
    finals = []
    for checkpointing in (False, True):
        out = tmp_path / f"out-{checkpointing}"
        hp = {"batchSize": 4, "gradientCheckpointing": checkpointing, "maxSteps": 10}
        spec = {"objective": "instruction", "method": "full", "hyperparameters": hp}
        assert run(step_spec(out, world["instruction"], world["base"], spec=spec)).ok
        finals.append(results(out)["train_loss"])
    assert finals[0] == pytest.approx(finals[1], rel=1e-3)  # same math, less memory


def test_early_stopping_stops_when_validation_stops_improving(
    world: dict[str, str], tmp_path: Path
) -> None:
    out = tmp_path / "out"
    spec = {
        "objective": "instruction",
        "method": "full",
        # a learning rate far too high: validation loss gets worse, training must stop early
        "hyperparameters": {"batchSize": 4, "maxSteps": 200, "learningRate": 0.5},
        "evaluation": {"everySteps": 5, "earlyStoppingPatience": 2},
    }
    result = run(step_spec(out, world["instruction"], world["base"], spec=spec))
    assert result.ok, result.message
    summary = results(out)
    assert summary["stopped_early"] is True
    assert summary["steps"] < 200
    assert any("eval_loss" in m for m in metrics(out))


@pytest.mark.parametrize("family", ["gpt2", "qwen2"])
def test_from_scratch_designs_train_save_and_generate(
    world: dict[str, str], family: str, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    spec = {
        "model": {
            "architecture": {
                "family": family,
                "layers": 2,
                "hiddenSize": 32,
                "heads": 4,
                "contextLength": 128,
            },
            "tokenizer": {"train": "bpe", "vocabSize": 300},
        },
        "objective": "continued-pretraining",
        "method": "full",
        "hyperparameters": {"batchSize": 4, "learningRate": 1e-2, "packing": True},
    }
    result = run(step_spec(out, world["text"], None, spec=spec))
    assert result.ok, result.message
    losses = train_losses(out)
    assert losses[-1] < losses[0] - 1.0, losses
    assert read_info(out).family == family
    loaded = load_model("file://" + str(out))
    assert loaded.model.config.model_type == family
    ids = loaded.tokenizer("The sky is", return_tensors="pt")
    generated = loaded.model.generate(**ids, max_new_tokens=5, do_sample=False)
    assert generated.shape[1] > ids["input_ids"].shape[1]
