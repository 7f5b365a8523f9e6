"""The compress step on tiny trained models: merge, quantize, prune, report, bad inputs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("bitsandbytes")

from kubetune.api.compression import CompressionSpec, PruneStep  # noqa: E402
from kubetune.api.steps import (  # noqa: E402
    CompressStepSpec,
    InputArtifact,
    Producer,
    StepResult,
    parse_step_result,
)
from kubetune_workloads.compress import run  # noqa: E402
from kubetune_workloads.errors import WorkloadError  # noqa: E402
from kubetune_workloads.manifest import read_manifest  # noqa: E402
from kubetune_workloads.modelio import ModelInfo, load_model, save_model  # noqa: E402

from tests.helpers.tiny import CORPUS, tiny_llama, tiny_tokenizer, write_dataset  # noqa: E402

REPORT = {"prompts": ["The cat sat", "To reset your password"], "maxNewTokens": 4}
VALIDATION = [
    {"text": "The cat looked at the river by the old mill."},
    {"text": "Open Settings then Storage to see your quota."},
    {"text": "Shared links expire after seven days."},
    {"text": "The baker opened his shop in the quiet town."},
] * 3


def train(model: Any, tokenizer: Any, steps: int = 12, seed: int = 0) -> Any:
    """A few optimizer steps on the tiny corpus, so weights and perplexity are not random."""
    torch.manual_seed(seed)
    ids = tokenizer(" ".join(CORPUS[:8]), return_tensors="pt")["input_ids"][:, :64]
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(steps):
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    return model.eval()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A trained base (hidden 128), a second smaller one, a LoRA adapter, a dataset."""
    from peft import LoraConfig, get_peft_model

    root = tmp_path_factory.mktemp("compress")
    tok = tiny_tokenizer()
    base = train(tiny_llama(tok, hidden=128, layers=2, heads=4), tok)
    save_model(base, tok, root / "base", ModelInfo(format="full", family="llama"))
    small = train(tiny_llama(tok, hidden=64, layers=2, heads=4, seed=1), tok, seed=1)
    save_model(small, tok, root / "small", ModelInfo(format="full", family="llama"))
    # grouped-query attention, as in the quickstart model
    gqa = train(tiny_llama(tok, hidden=64, layers=2, heads=4, kv_heads=2), tok, steps=5)
    save_model(gqa, tok, root / "gqa", ModelInfo(format="full", family="llama"))

    lora = LoraConfig(
        r=4,
        lora_alpha=8,
        target_modules=["q_proj", "v_proj", "up_proj"],
        init_lora_weights=False,  # random A and B: the adapter changes the outputs
        task_type="CAUSAL_LM",
    )
    peft_model = get_peft_model(tiny_llama(tok, hidden=128, layers=2, heads=4), lora)
    peft_model.base_model.model.load_state_dict(base.state_dict(), strict=False)
    info = ModelInfo(format="adapter", base_uri=f"file://{root / 'base'}", family="llama")
    save_model(peft_model, tok, root / "adapter", info)

    write_dataset(root / "data", "text", [{"text": t} for t in CORPUS[:8]], VALIDATION)
    return {
        "root": root,
        "base": root / "base",
        "small": root / "small",
        "gqa": root / "gqa",
        "adapter": root / "adapter",
        "data": root / "data",
    }


def step_spec(
    model: Path, out: Path, steps: list[dict[str, Any]], data: Path | None, **report: Any
) -> CompressStepSpec:
    spec = CompressionSpec.model_validate(
        {
            "model": {"uri": f"file://{model}"},
            "steps": steps,
            **({"dataset": {"uri": f"file://{data}"}} if data else {}),
            "report": {**REPORT, **report},
        }
    )
    return CompressStepSpec(
        producer=Producer(kind="Compression", name="c", namespace="default", run_id="r1"),
        output_uri=f"file://{out}",
        spec=spec,
        model=InputArtifact(uri=f"file://{model}"),
        dataset=InputArtifact(uri=f"file://{data}") if data else None,
    )


def compress(
    world: dict[str, Path], model: str, steps: list[dict[str, Any]], name: str, **report: Any
) -> tuple[StepResult, Path]:
    out = world["root"] / "out" / name
    result = run(step_spec(world[model], out, steps, world["data"], **report))
    return result, out


def plain_load(path: Path) -> Any:
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(str(path)).eval()


def linear_bytes(path: Path, model: Any, skip: tuple[str, ...] = ("lm_head",)) -> tuple[int, int]:
    """(stored bytes, fp16 bytes) of the linear weights and their quantization state.

    Stored sizes come from the safetensors headers of the written files.
    """
    from kubetune_workloads.compress.measure import tensor_bytes

    sizes = tensor_bytes(path)
    stored = fp16 = 0
    for name, module in model.named_modules():
        if not isinstance(module, torch.nn.Linear) or name in skip:
            continue
        stored += sum(
            size
            for key, size in sizes.items()
            if key.startswith(f"{name}.") and not key.endswith(".bias")
        )
        state = getattr(module.weight, "quant_state", None)
        numel = int(torch.Size(state.shape).numel()) if state is not None else module.weight.numel()
        fp16 += 2 * numel
    return stored, fp16


def generate(model: Any, tok: Any) -> Any:
    ids = tok("The cat", return_tensors="pt")["input_ids"]
    return model.generate(
        ids, max_new_tokens=5, min_new_tokens=5, do_sample=False, pad_token_id=tok.pad_token_id
    )


def zero_fraction(model: Any) -> float:
    zeros = total = 0
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear) and name != "lm_head":
            zeros += int((module.weight == 0).sum())
            total += module.weight.numel()
    return zeros / total


# --- merge -----------------------------------------------------------------------------------


def test_merge_is_exact_and_loads_with_plain_transformers(world: dict[str, Path]) -> None:
    from peft import PeftModel

    result, out = compress(world, "adapter", [{"mergeAdapter": {}}], "merged")
    assert result.ok, result.message
    assert not (out / "adapter_config.json").exists()
    merged = plain_load(out)
    reference = PeftModel.from_pretrained(plain_load(world["base"]), str(world["adapter"])).eval()
    base_only = plain_load(world["base"])
    ids = torch.tensor([[1, 20, 30, 40, 50, 60, 70]])
    with torch.no_grad():
        want, got, base_logits = reference(ids).logits, merged(ids).logits, base_only(ids).logits
    assert not torch.allclose(want, base_logits, atol=1e-3)  # the adapter matters...
    assert torch.allclose(got, want, atol=1e-4)  # ...and the merge reproduces it
    manifest = read_manifest(out)
    assert manifest is not None and manifest.artifact == "compressed-model"
    assert result.content_hash == manifest.content_hash
    info = json.loads((out / "kubetune-model.json").read_text())
    assert info["format"] == "full"
    loaded = load_model(f"file://{out}")  # a valid `from`/candidate for later steps
    assert loaded.info.format == "full"


# --- quantize --------------------------------------------------------------------------------


def test_int8_loads_generates_and_shrinks_linear_weights(world: dict[str, Path]) -> None:
    result, out = compress(world, "base", [{"quantize": {"bits": 8}}], "int8")
    assert result.ok, result.message
    model = plain_load(out)
    assert type(model.model.layers[0].mlp.up_proj).__name__ == "Linear8bitLt"
    assert generate(model, load_model(f"file://{out}").tokenizer).shape[1] > 2
    stored, fp16 = linear_bytes(out, model)
    assert stored < 0.6 * fp16
    assert json.loads((out / "config.json").read_text())["quantization_config"]["load_in_8bit"]
    info = json.loads((out / "kubetune-model.json").read_text())
    assert info["quantization"]["load_in_8bit"] is True
    assert result.metrics["sizeRatio"] < 1


def test_nf4_linear_weights_at_most_030_of_fp16(world: dict[str, Path]) -> None:
    steps = [{"quantize": {"bits": 4, "quantType": "nf4", "computeDtype": "fp32"}}]
    result, out = compress(world, "base", steps, "nf4")
    assert result.ok, result.message
    model = plain_load(out)
    assert type(model.model.layers[0].self_attn.q_proj).__name__ == "Linear4bit"
    assert type(model.lm_head).__name__ == "Linear"  # skipModules default keeps lm_head
    tok = load_model(f"file://{out}").tokenizer
    assert (
        generate(model, tok).shape[1]
        == tok("The cat", return_tensors="pt")["input_ids"].shape[1] + 5
    )
    stored, fp16 = linear_bytes(out, model)
    assert stored <= 0.30 * fp16
    report = json.loads((out / "report.json").read_text())
    assert report["after"]["bytesOnDisk"] == sum(
        p.stat().st_size for p in out.glob("*.safetensors")
    )
    assert report["after"]["quantization"] == "bnb-4bit-nf4"
    assert report["after"]["memoryBytes"] < report["before"]["memoryBytes"]


# --- prune -----------------------------------------------------------------------------------


@pytest.mark.parametrize("scope", ["layer", "global"])
def test_magnitude_pruning_hits_sparsity(world: dict[str, Path], scope: str) -> None:
    steps = [{"prune": {"method": "magnitude", "sparsity": 0.6, "scope": scope}}]
    result, out = compress(world, "base", steps, f"prune-{scope}")
    assert result.ok, result.message
    assert abs(zero_fraction(plain_load(out)) - 0.6) <= 0.01
    assert abs(result.metrics["sparsity"] - 0.6) <= 0.01
    report = json.loads((out / "report.json").read_text())
    assert any("saves no bytes" in note for note in report["notes"])
    assert report["after"]["bytesOnDisk"] == report["before"]["bytesOnDisk"]


def test_structured_channels_physically_shrink_the_mlp(world: dict[str, Path]) -> None:
    steps = [{"prune": {"method": "structured", "granularity": "channels", "sparsity": 0.5}}]
    result, out = compress(world, "base", steps, "channels")
    assert result.ok, result.message
    model = plain_load(out)
    assert model.config.intermediate_size == 128  # 256 -> 128
    assert model.model.layers[1].mlp.down_proj.weight.shape == (128, 128)
    assert result.metrics["paramsAfter"] < result.metrics["paramsBefore"]
    assert result.metrics["bytesAfter"] < result.metrics["bytesBefore"]
    assert generate(model, load_model(f"file://{out}").tokenizer).shape[1] > 2


@pytest.mark.parametrize(
    ("model", "heads", "kv_heads", "q_shape"), [("base", 2, 2, (64, 128)), ("gqa", 2, 1, (32, 64))]
)
def test_structured_heads_physically_shrink_attention(
    world: dict[str, Path], model: str, heads: int, kv_heads: int, q_shape: tuple[int, int]
) -> None:
    steps = [{"prune": {"method": "structured", "granularity": "heads", "sparsity": 0.5}}]
    result, out = compress(world, model, steps, f"heads-{model}")
    assert result.ok, result.message
    pruned = plain_load(out)
    assert pruned.config.num_attention_heads == heads
    assert pruned.config.num_key_value_heads == kv_heads
    assert tuple(pruned.model.layers[0].self_attn.q_proj.weight.shape) == q_shape
    assert result.metrics["paramsAfter"] < result.metrics["paramsBefore"]
    assert generate(pruned, load_model(f"file://{out}").tokenizer).shape[1] > 2


def test_chained_merge_prune_quantize(world: dict[str, Path]) -> None:
    steps = [
        {"mergeAdapter": {}},
        {"prune": {"method": "magnitude", "sparsity": 0.5}},
        {"quantize": {"bits": 4, "computeDtype": "fp32"}},
    ]
    result, out = compress(world, "adapter", steps, "chain")
    assert result.ok, result.message
    report = json.loads((out / "report.json").read_text())
    assert [next(iter(s)) for s in report["steps"]] == ["mergeAdapter", "prune", "quantize"]
    assert report["after"]["sparsity"] >= 0.49  # nf4 keeps exact zeros
    assert report["after"]["quantization"] == "bnb-4bit-nf4"
    assert report["model"]["format"] == "adapter"
    assert result.metrics["sizeRatio"] < 0.7
    model = plain_load(out)
    assert type(model.model.layers[0].mlp.up_proj).__name__ == "Linear4bit"


# --- report ----------------------------------------------------------------------------------


def test_report_numbers_are_measured_for_each_input(world: dict[str, Path]) -> None:
    steps = [{"prune": {"method": "magnitude", "sparsity": 0.3}}]
    first, out_a = compress(world, "base", steps, "report-a")
    second, _ = compress(world, "small", steps, "report-b")
    for key in (
        "paramsBefore",
        "bytesBefore",
        "perplexityBefore",
        "perplexityAfter",
        "memoryBytesBefore",
    ):
        assert first.metrics[key] != second.metrics[key], key
    report = json.loads((out_a / "report.json").read_text())
    assert report["before"]["perplexity"] == first.metrics["perplexityBefore"]
    assert report["evaluation"]["tokens"] > 0
    assert report["deltas"]["perplexityDelta"] == pytest.approx(
        report["after"]["perplexity"] - report["before"]["perplexity"]
    )
    markdown = (out_a / "report.md").read_text()
    assert f"{report['before']['perplexity']:.3f}" in markdown
    assert (out_a / "README.md").read_text().startswith("---")
    assert len(StepResult.model_validate(first.model_dump()).termination_message()) < 4096


def test_quality_gate_fails_but_keeps_artifact(world: dict[str, Path]) -> None:
    steps = [{"prune": {"method": "magnitude", "sparsity": 0.95}}]
    result, out = compress(world, "base", steps, "gate", maxPerplexityIncrease=0.01)
    assert not result.ok
    assert result.reason == "QualityGateFailed"
    assert result.failed_gates == ["maxPerplexityIncrease"]
    assert result.metrics["perplexityAfter"] > result.metrics["perplexityBefore"]
    assert read_manifest(out) is not None and (out / "report.json").is_file()
    assert json.loads((out / "report.json").read_text())["qualityGate"]["passed"] is False


# --- bad inputs ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def quantized_input(world: dict[str, Path]) -> Path:
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    path = world["root"] / "already-nf4"
    model = AutoModelForCausalLM.from_pretrained(
        str(world["base"]), quantization_config=BitsAndBytesConfig(load_in_4bit=True)
    )
    save_model(model, load_model(f"file://{world['base']}").tokenizer, path, ModelInfo())
    return path


@pytest.fixture(scope="module")
def gpt2_input(world: dict[str, Path]) -> Path:
    from transformers import GPT2Config, GPT2LMHeadModel

    tok = tiny_tokenizer()
    config = GPT2Config(vocab_size=len(tok), n_embd=32, n_layer=2, n_head=2, n_positions=64)
    path = world["root"] / "gpt2"
    save_model(GPT2LMHeadModel(config), tok, path, ModelInfo(family="gpt2"))
    return path


@pytest.mark.parametrize(
    ("model", "steps", "reason"),
    [
        ("quantized", [{"quantize": {"bits": 8}}], "AlreadyQuantized"),
        ("base", [{"mergeAdapter": {}}], "NoAdapter"),
        ("quantized", [{"prune": {"sparsity": 0.5}}], "PruneQuantized"),
        ("adapter", [{"quantize": {"bits": 4}}], "AdapterNotMerged"),
        ("base", [{"quantize": {"bits": 4}}, {"prune": {"sparsity": 0.5}}], "PruneQuantized"),
        (
            "gpt2",
            [{"prune": {"method": "structured", "granularity": "channels", "sparsity": 0.5}}],
            "UnsupportedArchitecture",
        ),
        (
            "gpt2",
            [{"prune": {"method": "structured", "granularity": "heads", "sparsity": 0.5}}],
            "UnsupportedArchitecture",
        ),
        ("base", [{"prune": {"sparsity": 0.5, "targetModules": ["nope"]}}], "InvalidInput"),
    ],
)
def test_bad_inputs_are_clear_errors(
    world: dict[str, Path],
    quantized_input: Path,
    gpt2_input: Path,
    model: str,
    steps: list[dict[str, Any]],
    reason: str,
) -> None:
    paths = {**world, "quantized": quantized_input, "gpt2": gpt2_input}
    out = world["root"] / "out" / f"bad-{reason}"
    with pytest.raises(WorkloadError) as caught:
        run(step_spec(paths[model], out, steps, world["data"]))
    assert caught.value.reason == reason
    assert len(caught.value.message) > 20
    assert not out.exists()  # nothing half-written


@pytest.mark.parametrize("sparsity", [1.0, -0.1, 1.5])
def test_sparsity_outside_unit_interval_is_refused(world: dict[str, Path], sparsity: float) -> None:
    spec = step_spec(
        world["base"], world["root"] / "out" / "bad-sparsity", [{"prune": {"sparsity": 0.5}}], None
    )
    spec.spec.steps[
        0
    ].prune = PruneStep.model_construct(  # bypass the API check: the pod guards too
        **{**PruneStep.model_validate({"sparsity": 0.5}).__dict__, "sparsity": sparsity}
    )
    with pytest.raises(WorkloadError) as caught:
        run(spec)
    assert caught.value.reason == "InvalidInput"
    assert "[0, 1)" in caught.value.message


# --- the pod entry point ---------------------------------------------------------------------


def _cli(
    spec: dict[str, Any], tmp_path: Path
) -> tuple[subprocess.CompletedProcess[str], StepResult | None]:
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(json.dumps(spec))
    term = tmp_path / "termination-log"
    env = {**os.environ, "KUBETUNE_TERMINATION_LOG": str(term)}
    proc = subprocess.run(
        [sys.executable, "-m", "kubetune_workloads", "compress", "--spec", str(spec_file)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    return proc, parse_step_result(term.read_text()) if term.exists() else None


def test_cli_compresses_and_reports_in_termination_message(
    world: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "cli-out"
    spec = step_spec(world["small"], out, [{"quantize": {"bits": 8}}], world["data"])
    proc, result = _cli(json.loads(spec.to_json()), tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert result is not None and result.ok and result.reason == "Completed"
    assert result.metrics["sizeRatio"] < 1 and "perplexityAfter" in result.metrics
    assert read_manifest(out) is not None


def test_cli_rejects_bad_sparsity_without_traceback(world: dict[str, Path], tmp_path: Path) -> None:
    spec = json.loads(
        step_spec(world["base"], tmp_path / "o", [{"prune": {"sparsity": 0.5}}], None).to_json()
    )
    spec["spec"]["steps"][0]["prune"]["sparsity"] = 1.5
    proc, result = _cli(spec, tmp_path)
    assert proc.returncode != 0
    assert result is not None and result.reason == "InvalidSpec" and "sparsity" in result.message
    assert "Traceback" not in proc.stderr


def test_example_manifest_validates() -> None:
    import yaml
    from kubetune.api import Compression

    root = Path(__file__).resolve().parents[2]
    example = Compression.model_validate(
        yaml.safe_load((root / "examples" / "compression-nf4.yaml").read_text())
    )
    names = [next(k for k, v in s.model_dump().items() if v) for s in example.spec.steps]
    assert names == ["merge_adapter", "prune", "quantize"]
    assert "compression-nf4.yaml" in (root / "docs" / "compression.md").read_text()
