"""Preference-tuning throughput on CPU: kubetune's ``objective: preference`` (DPO) vs TRL's
``DPOTrainer``, same tiny Llama, same LoRA, same pairs, same batch size, in one run.

Tokens/s counts the real (unpadded) tokens of the chosen and rejected sequences of every
optimizer step. Both sides pay for the reference model: TRL runs it (the base with the adapter
disabled) on every batch; kubetune computes its log-probabilities once before training, and
that time is added to its training time. Both run on one intra-op thread so that a shared
machine does not decide the result. Goal: >= 1.0x.

    python bench/preference_throughput.py [--quick]

The last line is one JSON object (see docs/architecture.md, "Benchmarks").
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any

import torch
from kubetune.api.finetune import FinetuneJobSpec
from kubetune.api.steps import FinetuneStepSpec, InputArtifact, Producer
from kubetune_workloads.finetune import run
from kubetune_workloads.finetune.preference_data import prompt_text
from kubetune_workloads.modelio import ModelInfo, load_tokenizer, save_model
from kubetune_workloads.prompts import ALPACA_PROMPT_NO_INPUT
from kubetune_workloads.tokenizer_train import train_tokenizer

HIDDEN, LAYERS, SEQ, BATCH, LORA_R, BETA = 64, 2, 128, 8, 8, 0.1
WORDS = ["cat", "dog", "sky", "sea", "tree", "book", "lamp", "door", "road", "bird", "fish"]


def pairs(n: int, seed: int = 0) -> list[dict[str, str]]:
    """Short prompts with two answers of different lengths (tens of tokens)."""
    rng = random.Random(seed)

    def words(low: int, high: int) -> str:
        return " ".join(rng.choice(WORDS) for _ in range(rng.randint(low, high)))

    return [
        {"prompt": f"Repeat: {words(3, 12)}", "chosen": words(2, 16), "rejected": words(2, 16)}
        for _ in range(n)
    ]


def build(root: Path, n: int) -> tuple[str, str, list[dict[str, str]]]:
    from transformers import LlamaConfig, LlamaForCausalLM

    records = pairs(n)
    texts = [" ".join(r.values()) for r in records] + [ALPACA_PROMPT_NO_INPUT]
    tok = train_tokenizer(texts, "bpe", vocab_size=512, min_frequency=1)
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=HIDDEN,
        intermediate_size=HIDDEN * 2,
        num_hidden_layers=LAYERS,
        num_attention_heads=4,
        max_position_embeddings=SEQ * 2,
        pad_token_id=tok.pad_token_id,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
    )
    save_model(LlamaForCausalLM(config), tok, root / "base", ModelInfo(format="full"))
    data = root / "data"
    data.mkdir()
    (data / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    (data / "dataset.json").write_text(json.dumps({"schema": "preference"}))
    return "file://" + str(root / "base"), "file://" + str(data), records


def ours(root: Path, base: str, data: str, steps: int) -> tuple[float, dict[str, Any]]:
    spec = FinetuneJobSpec.model_validate(
        {
            "model": {"base": {"uri": base}},
            "dataset": {"uri": data},
            "objective": "preference",
            "preference": {"algorithm": "dpo", "beta": BETA},
            "method": "lora",
            "lora": {"r": LORA_R, "alpha": 16, "dropout": 0.0, "targetModules": ["all-linear"]},
            "hyperparameters": {
                "maxSteps": steps,
                "batchSize": BATCH,
                "maxSeqLength": SEQ,
                "learningRate": 1e-3,
                "loggingSteps": steps,
                "precision": "fp32",
            },
        }
    )
    out = root / "out"
    step = FinetuneStepSpec(
        producer=Producer(kind="FinetuneJob", name="bench", namespace="bench", run_id="1"),
        output_uri="file://" + str(out),
        spec=spec,
        dataset=InputArtifact(uri=data),
        model=InputArtifact(uri=base),
    )
    result = run(step)
    if not result.ok:
        raise SystemExit(f"kubetune run failed: {result.reason}: {result.message}")
    found = json.loads((out / "results.json").read_text())
    seconds = found["train_seconds"] + found["reference_seconds"]
    return found["tokens_seen"] / seconds, found


def baseline(root: Path, records: list[dict[str, str]], steps: int) -> float:
    """TRL's DPOTrainer with a peft LoRA config (its reference: the adapter disabled)."""
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM
    from trl import DPOConfig, DPOTrainer

    base_path = root / "base"
    tokenizer = load_tokenizer(base_path)
    rows = [{**r, "prompt": tokenizer.bos_token + prompt_text(r, tokenizer, None)} for r in records]
    model = AutoModelForCausalLM.from_pretrained(str(base_path))
    lora = LoraConfig(
        r=LORA_R,
        lora_alpha=16,
        lora_dropout=0.0,
        target_modules="all-linear",
        task_type="CAUSAL_LM",
    )
    args = DPOConfig(
        output_dir=str(root / "trl"),
        per_device_train_batch_size=BATCH,
        max_steps=steps,
        learning_rate=1e-3,
        logging_steps=steps,
        save_strategy="no",
        report_to="none",
        use_cpu=True,
        bf16=False,
        gradient_checkpointing=False,
        dataloader_num_workers=0,
        disable_tqdm=True,
        max_length=SEQ,
        beta=BETA,
        seed=42,
    )
    trainer = DPOTrainer(
        model=model,
        args=args,
        train_dataset=Dataset.from_list(rows),
        processing_class=tokenizer,
        peft_config=lora,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        metrics = trainer.train().metrics
    tokens = [e["num_tokens"] for e in trainer.state.log_history if "num_tokens" in e]
    return float(tokens[-1]) / metrics["train_runtime"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps (< 1 minute)")
    args = parser.parse_args(argv)
    steps = 30 if args.quick else 150
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="kubetune-bench-") as tmp:
        root = Path(tmp)
        base, data, records = build(root, n=steps * BATCH)
        trl_tps = baseline(root, records, steps)
        ours_tps, found = ours(root, base, data, steps)
    ratio = ours_tps / trl_tps
    print(f"TRL DPOTrainer + peft LoRA:   {trl_tps:10.0f} tokens/s", file=sys.stderr)
    print(
        f"kubetune preference (dpo):    {ours_tps:10.0f} tokens/s  {ratio:.2f}x (goal >= 1.0x; "
        f"reference {found['reference_seconds']:.2f}s of {found['train_seconds']:.2f}s)",
        file=sys.stderr,
    )
    print(
        json.dumps(
            {
                "bench": "preference_throughput",
                "metric": "dpo_lora_tokens_per_second",
                "value": round(ours_tps, 1),
                "baseline": round(trl_tps, 1),
                "ratio": round(ratio, 3),
                "goal": 1.0,
                "unit": "tokens/s",
                "reference_seconds": round(found["reference_seconds"], 3),
                "steps": steps,
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
