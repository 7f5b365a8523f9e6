"""The finetune step on tiny models: objectives x methods, outputs, chaining, bad inputs."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("peft")

from kubetune.api.finetune import Hyperparameters  # noqa: E402
from kubetune.api.steps import MANIFEST_FILE, parse_step_result  # noqa: E402
from kubetune_workloads.errors import WorkloadError  # noqa: E402
from kubetune_workloads.finetune import run  # noqa: E402
from kubetune_workloads.finetune.data import IGNORE, tokenize  # noqa: E402
from kubetune_workloads.finetune.optim import warmup_steps  # noqa: E402
from kubetune_workloads.manifest import read_manifest  # noqa: E402
from kubetune_workloads.modelio import load_model, read_info  # noqa: E402
from test_finetune_support import (  # noqa: E402
    SCHEMA_OF,
    chat_records,
    make_dataset,
    metrics,
    results,
    save_base,
    single_thread,  # noqa: F401 - autouse fixture
    step_spec,
    subprocess_env,
    train_losses,
)

METHOD_SPECS = {
    "full": {"method": "full"},
    "lora": {"method": "lora", "lora": {"r": 8, "alpha": 32}},
    "qlora": {
        "method": "qlora",
        "lora": {"r": 8, "alpha": 32},
        "quantization": {"bits": 4, "computeDtype": "fp32"},
    },
}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    root = tmp_path_factory.mktemp("finetune")
    base_path = root / "base"
    return {
        "root": root,
        "base_path": base_path,
        "base": save_base(base_path),
        **{schema: make_dataset(root / f"ds-{schema}", schema) for schema in SCHEMA_OF.values()},
    }


@pytest.mark.parametrize("method", ["full", "lora", "qlora"])
@pytest.mark.parametrize("objective", ["continued-pretraining", "instruction", "chat"])
def test_each_objective_and_method_trains_and_loss_falls(
    world: dict, objective: str, method: str, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    lr = 1e-2 if method == "full" else 3e-2
    hp = {"learningRate": lr, "batchSize": 4}
    spec = {"objective": objective, **METHOD_SPECS[method], "hyperparameters": hp}
    result = run(step_spec(out, world[SCHEMA_OF[objective]], world["base"], spec=spec))

    assert result.ok and result.reason == "Completed"
    losses = train_losses(out)
    # a random tiny base leaves LoRA little room; full fine-tuning learns the data outright
    assert losses[-1] < losses[0] - (1.0 if method == "full" else 0.15), losses
    assert read_manifest(out) is not None
    info = read_info(out)
    assert info.format == ("full" if method == "full" else "adapter")
    if method != "full":
        assert info.base_uri == world["base"]
        assert (out / "adapter_model.safetensors").is_file()
        assert not list(out.glob("*.bin"))
    summary = results(out)
    assert summary["steps"] == 30 and summary["tokens_seen"] > 0
    assert summary["eval_perplexity"] == pytest.approx(math.exp(summary["eval_loss"]))
    assert result.metrics["trainLoss"] == pytest.approx(summary["train_loss"])


def test_lora_output_opens_with_plain_transformers_and_peft(world: dict, tmp_path: Path) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path / "out"
    spec = {
        "objective": "instruction",
        **METHOD_SPECS["lora"],
        "lora": {"r": 4, "targetModules": ["q_proj", "v_proj"], "useRslora": True},
        "mergeAdapter": True,
        "hyperparameters": {"maxSteps": 10, "learningRate": 5e-2},
    }
    assert run(step_spec(out, world["instruction"], world["base"], spec=spec)).ok

    base = AutoModelForCausalLM.from_pretrained(str(world["base_path"]))
    adapted = PeftModel.from_pretrained(base, str(out)).eval()
    merged = AutoModelForCausalLM.from_pretrained(str(out / "merged")).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(out))
    ids = tokenizer("What color is the sky?", return_tensors="pt").input_ids
    with torch.no_grad():
        assert torch.allclose(adapted(ids).logits, merged(ids).logits, atol=1e-4)
        plain = AutoModelForCausalLM.from_pretrained(str(world["base_path"])).eval()(ids).logits
    assert not torch.allclose(plain, merged(ids).logits, atol=1e-4)  # the adapter did something
    assert json.loads((out / "adapter_config.json").read_text())["r"] == 4
    assert read_info(out).instruction_template == "alpaca"  # Evaluation asks the same way
    assert read_info(out / "merged").instruction_template == "alpaca"
    card = (out / "README.md").read_text()
    assert "instruction" in card and "lora" in card and world["base"] in card


def test_packing_fills_rows_and_trains(world: dict, tmp_path: Path) -> None:
    out = tmp_path / "out"
    spec = {
        "objective": "instruction",
        **METHOD_SPECS["full"],
        "hyperparameters": {"packing": True, "maxSteps": 12, "batchSize": 2},
    }
    assert run(step_spec(out, world["instruction"], world["base"], spec=spec)).ok
    logged = metrics(out)
    # 2 packed rows of <= 128 tokens per step hold far more than 2 short examples' tokens
    per_step = logged[0]["tokens_seen"]
    assert per_step > 2 * 60
    assert train_losses(out)[-1] < train_losses(out)[0]


def test_chat_loss_is_on_assistant_turns_only(world: dict) -> None:
    from kubetune_workloads.modelio import load_tokenizer

    tokenizer = load_tokenizer(world["base_path"])
    record = chat_records(1, seed=3)[0]
    example = tokenize([record], tokenizer, "chat", 256).examples[0]
    scored = [
        t for t, label in zip(example.input_ids, example.labels, strict=True) if label != IGNORE
    ]
    text = tokenizer.decode(scored)
    replies = [m["content"] for m in record["messages"] if m["role"] == "assistant"]
    assert all(reply in text for reply in replies)
    assert (
        "What color" not in text and "You name colors" not in text and "<|assistant|>" not in text
    )


def test_warmup_ratio_counts_optimizer_steps(world: dict, tmp_path: Path) -> None:
    hp = Hyperparameters(maxSteps=30, warmupRatio=0.1)
    assert warmup_steps(hp, 30) == 3
    out = tmp_path / "out"
    spec = {
        "objective": "continued-pretraining",
        **METHOD_SPECS["full"],
        "hyperparameters": {
            "maxSteps": 20,
            "warmupSteps": None,
            "warmupRatio": 0.5,
            "loggingSteps": 1,
            "scheduler": "linear",
        },
    }
    assert run(step_spec(out, world["text"], world["base"], spec=spec)).ok
    lrs = [m["learning_rate"] for m in metrics(out) if "learning_rate" in m]
    peak = max(lrs)
    assert lrs.index(peak) == 9  # the LR rises for 10 of 20 steps, then decays
    assert peak == pytest.approx(1e-2)


def test_chaining_continues_an_adapter_on_the_same_base(world: dict, tmp_path: Path) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    spec = {
        "objective": "instruction",
        **METHOD_SPECS["lora"],
        "hyperparameters": {"learningRate": 3e-2},
    }
    assert run(step_spec(first, world["instruction"], world["base"], spec=spec)).ok
    chained = {**spec, "model": {"from": {"kind": "FinetuneJob", "name": "first"}}}
    step = step_spec(second, world["instruction"], "file://" + str(first), spec=chained)
    assert run(step).ok

    assert read_info(second).base_uri == world["base"]
    assert train_losses(second)[0] < train_losses(first)[0] - 0.3  # starts where first ended
    loaded = load_model("file://" + str(second))
    assert type(loaded.model).__name__ == "PeftModelForCausalLM"


def test_chaining_from_a_full_model_output(world: dict, tmp_path: Path) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    spec = {"objective": "continued-pretraining", **METHOD_SPECS["full"]}
    assert run(step_spec(first, world["text"], world["base"], spec=spec)).ok
    chained = {**spec, **METHOD_SPECS["lora"], "model": {"from": {"uri": "file://" + str(first)}}}
    assert run(step_spec(second, world["text"], "file://" + str(first), spec=chained)).ok
    assert read_info(second).base_uri == "file://" + str(first)
    assert train_losses(second)[0] < train_losses(first)[0] - 1.0


def test_live_progress_file_ends_at_the_last_step(
    world: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    progress = tmp_path / "progress.json"
    monkeypatch.setenv("KUBETUNE_PROGRESS_FILE", str(progress))
    spec = {
        "objective": "continued-pretraining",
        **METHOD_SPECS["full"],
        "hyperparameters": {"maxSteps": 6},
    }
    assert run(step_spec(tmp_path / "out", world["text"], world["base"], spec=spec)).ok
    view = json.loads(progress.read_text())
    assert view["step"] == 6 and view["totalSteps"] == 6 and view["phase"] == "Succeeded"
    assert view["tokensPerSecond"] > 0 and "loss" in view


# --- bad inputs ---------------------------------------------------------------------------


def _fails(step: object) -> WorkloadError:
    with pytest.raises(WorkloadError) as info:
        run(step)  # type: ignore[arg-type]
    return info.value


def test_missing_dataset_field_names_the_field(world: dict, tmp_path: Path) -> None:
    spec = {"objective": "instruction", **METHOD_SPECS["lora"]}
    err = _fails(step_spec(tmp_path / "out", world["text"], world["base"], spec=spec))
    assert err.reason == "InvalidInput" and "'instruction'" in err.message
    assert not (tmp_path / "out").exists()


def test_sequence_longer_than_context_is_refused(world: dict, tmp_path: Path) -> None:
    spec = {"objective": "chat", **METHOD_SPECS["lora"], "hyperparameters": {"maxSeqLength": 4096}}
    err = _fails(step_spec(tmp_path / "out", world["chat"], world["base"], spec=spec))
    assert err.reason == "InvalidInput" and "context length 256" in err.message


def test_pickle_only_weights_are_refused(world: dict, tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM

    pickled = tmp_path / "pickled"
    model = AutoModelForCausalLM.from_pretrained(str(world["base_path"]))
    model.save_pretrained(str(pickled), safe_serialization=False)
    if not list(pickled.glob("*.bin")):  # transformers 5 may always write safetensors
        for f in pickled.glob("*.safetensors"):
            f.unlink()
        torch.save(model.state_dict(), pickled / "pytorch_model.bin")
    spec = {"objective": "chat", **METHOD_SPECS["lora"]}
    err = _fails(step_spec(tmp_path / "out", world["chat"], "file://" + str(pickled), spec=spec))
    assert err.reason == "UnsafeWeights"


def test_unknown_target_modules_list_the_available_ones(world: dict, tmp_path: Path) -> None:
    spec = {
        "objective": "chat",
        **METHOD_SPECS["lora"],
        "lora": {"r": 4, "targetModules": ["q_proj", "attn.c_attn"]},
    }
    err = _fails(step_spec(tmp_path / "out", world["chat"], world["base"], spec=spec))
    assert err.reason == "InvalidInput"
    assert "attn.c_attn" in err.message and "k_proj" in err.message and "gate_proj" in err.message


def test_nan_loss_stops_with_a_clear_reason(world: dict, tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    broken = tmp_path / "broken"
    model = AutoModelForCausalLM.from_pretrained(str(world["base_path"]))
    with torch.no_grad():
        model.model.layers[0].mlp.up_proj.weight.fill_(float("nan"))
    model.save_pretrained(str(broken))
    AutoTokenizer.from_pretrained(str(world["base_path"])).save_pretrained(str(broken))
    spec = {"objective": "continued-pretraining", **METHOD_SPECS["full"]}
    err = _fails(step_spec(tmp_path / "out", world["text"], "file://" + str(broken), spec=spec))
    assert err.reason == "NaNLoss" and "step 1" in err.message
    assert not (tmp_path / "out" / MANIFEST_FILE).exists()


def test_command_line_reports_a_bad_input_in_the_termination_message(
    world: dict, tmp_path: Path
) -> None:
    spec = {"objective": "continued-pretraining", **METHOD_SPECS["lora"]}
    step = step_spec(tmp_path / "out", world["chat"], world["base"], spec=spec)
    spec_file, termination = tmp_path / "spec.json", tmp_path / "termination"
    spec_file.write_text(step.to_json())
    env = subprocess_env(KUBETUNE_TERMINATION_LOG=str(termination))
    proc = subprocess.run(
        [sys.executable, "-m", "kubetune_workloads", "finetune", "--spec", str(spec_file)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode != 0
    result = parse_step_result(termination.read_text())
    assert result is not None and result.reason == "InvalidInput" and "'text'" in result.message
    assert "Traceback" not in proc.stderr


def test_an_over_long_prompt_is_cut_from_the_start_keeping_the_response(world: dict) -> None:
    from kubetune_workloads.modelio import load_tokenizer

    tokenizer = load_tokenizer(world["base_path"])
    record = {"instruction": "What color is the sky? " * 40, "input": "", "output": "blue"}
    split = tokenize([record], tokenizer, "instruction", 48)
    assert split.truncated == 1 and not split.dropped
    example = split.examples[0]
    assert len(example.input_ids) <= 48
    scored = [
        t for t, label in zip(example.input_ids, example.labels, strict=True) if label != IGNORE
    ]
    assert tokenizer.decode(scored).startswith("blue")
    assert "### Response:" in tokenizer.decode(example.input_ids)
