"""Evaluate step: batched generation, stop strings, chat template, sampling, model formats."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from kubetune.api.evaluation import GenerationSpec, PromptCase
from kubetune_workloads.evaluate import run
from kubetune_workloads.evaluate.generation import Generator
from kubetune_workloads.modelio import load_model

from tests.workloads.eval_fixtures.models import DOMAIN_QA, PLANTED, prompt, uri
from tests.workloads.eval_fixtures.specs import step_spec

WORDS = [
    *("the", "cat", "sat", "on", "the", "mat", "rain", "fell", "over", "town"),
    *("your", "files", "password", "settings"),
]


def _generator(name: str, **gen: object) -> Generator:
    loaded = load_model(uri(name))
    return Generator(loaded.model, loaded.tokenizer, GenerationSpec.model_validate(gen))


@pytest.mark.parametrize("name", ["tuned", "base"])
def test_batched_greedy_equals_one_by_one(name: str) -> None:
    gen = _generator(name, maxNewTokens=12, batchSize=8)
    rng = random.Random(0)
    texts = [prompt(q) for q, _ in DOMAIN_QA + PLANTED]
    texts += [" ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 15))) for _ in range(14)]
    prompts = [gen.encode(PromptCase(prompt=t)) for t in texts]
    assert len({len(p) for p in prompts}) > 5  # really different lengths: padding matters
    batched = gen.generate(prompts)
    single = gen.generate(prompts, batch_size=1)
    assert [g.text for g in batched] == [g.text for g in single]
    assert [g.new_tokens for g in batched] == [g.new_tokens for g in single]


def test_outputs_keep_input_order_and_stop_at_eos() -> None:
    gen = _generator("tuned", maxNewTokens=24, batchSize=3)
    outputs = gen.generate([gen.encode(PromptCase(prompt=prompt(q))) for q, _ in DOMAIN_QA])
    assert [o.text for o in outputs] == [a for _, a in DOMAIN_QA]
    assert all(o.new_tokens < 24 for o in outputs)  # stopped at end-of-sequence


def test_stop_strings_cut_the_output() -> None:
    gen = _generator("tuned", maxNewTokens=24, stop=[" then"])
    (out,) = gen.generate([gen.encode(PromptCase(prompt=prompt(DOMAIN_QA[0][0])))])
    assert out.text == "Open Settings"


def test_chat_cases_use_the_chat_template() -> None:
    gen = _generator("tuned")
    case = PromptCase(messages=[{"role": "user", "content": "Hello there"}])
    text = gen.tokenizer.decode(gen.encode(case))
    assert text.startswith("<|user|>\nHello there</s>") and text.endswith("<|assistant|>\n")


def test_seeded_sampling_is_reproducible() -> None:
    prompts_text = [prompt(q) for q, _ in DOMAIN_QA]

    def sample(seed: int) -> list[str]:
        gen = _generator("base", maxNewTokens=8, doSample=True, temperature=2.0, seed=seed)
        return [
            g.text for g in gen.generate([gen.encode(PromptCase(prompt=t)) for t in prompts_text])
        ]

    assert sample(7) == sample(7)
    assert sample(7) != sample(8)


def _outputs(out: Path) -> list[str]:
    rows = [json.loads(line) for line in (out / "cases.jsonl").read_text().splitlines()]
    return [r["candidate"]["output"] for r in rows]


def test_adapter_candidate_is_loaded_on_its_base(tmp_path: Path) -> None:
    run(step_spec(tmp_path / "adapter", uri("adapter")))
    run(step_spec(tmp_path / "base", uri("base")))
    adapter, base = _outputs(tmp_path / "adapter"), _outputs(tmp_path / "base")
    assert len(adapter) == len(DOMAIN_QA)
    assert adapter != base  # the LoRA weights changed what the base says


def test_bitsandbytes_quantized_model(tmp_path: Path) -> None:
    pytest.importorskip("bitsandbytes")
    from kubetune_workloads.modelio import ModelInfo, save_model
    from transformers import BitsAndBytesConfig

    loaded = load_model(uri("tuned"), quantization={"load_in_8bit": True})
    assert isinstance(loaded.model.config.quantization_config, BitsAndBytesConfig)
    quantized = tmp_path / "q8"
    save_model(loaded.model, loaded.tokenizer, quantized, ModelInfo(format="full"))
    result = run(step_spec(tmp_path / "out", f"file://{quantized}"))
    assert result.ok
    assert result.metrics["exactMatch"] >= 0.5  # 8-bit weights still answer the domain
