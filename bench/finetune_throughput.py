"""Finetune throughput on CPU: kubetune's finetune step vs a plain ``transformers.Trainer`` +
peft LoRA baseline, same tiny Llama, same LoRA, same data, same batch size, in one run.

Tokens/s counts real (unpadded) tokens. The baseline pads each batch to its longest sample,
as a plain Trainer with a padding collator does; kubetune runs once unpadded-but-padded-per-
batch (goal >= 1.0x) and once with sample packing (goal >= 1.5x on short samples).
Both run on one intra-op thread so that a shared machine does not decide the result.

    python bench/finetune_throughput.py [--quick]

The last line is one JSON object (see docs/architecture.md, "Benchmarks").
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch
from kubetune.api.finetune import FinetuneJobSpec
from kubetune.api.steps import FinetuneStepSpec, InputArtifact, Producer
from kubetune_workloads.finetune import run
from kubetune_workloads.finetune.data import tokenize
from kubetune_workloads.modelio import ModelInfo, load_tokenizer, save_model
from kubetune_workloads.tokenizer_train import train_tokenizer

HIDDEN, LAYERS, SEQ, BATCH, LORA_R = 64, 2, 128, 8, 8
TEMPLATE = "### Instruction:\n{instruction}\n### Response:\n"


def samples(n: int, seed: int = 0) -> list[dict[str, str]]:
    """Short instruction samples (tens of tokens): the case packing is for."""
    rng = random.Random(seed)
    words = [
        "cat",
        "dog",
        "sky",
        "sea",
        "tree",
        "book",
        "lamp",
        "door",
        "road",
        "bird",
        "fish",
        "star",
        "moon",
        "sun",
        "rain",
    ]
    out = []
    for _ in range(n):
        q = " ".join(rng.choice(words) for _ in range(rng.randint(3, 12)))
        a = " ".join(rng.choice(words) for _ in range(rng.randint(2, 16)))
        out.append({"instruction": f"Repeat: {q}", "input": "", "output": a})
    return out


def build(root: Path, n: int) -> tuple[str, str]:
    from transformers import LlamaConfig, LlamaForCausalLM

    records = samples(n)
    texts = [r["instruction"] + " " + r["output"] for r in records] + [TEMPLATE]
    tok = train_tokenizer(texts, "bpe", vocab_size=512, min_frequency=1)
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=HIDDEN,
        intermediate_size=HIDDEN * 2,
        num_hidden_layers=LAYERS,
        num_attention_heads=4,
        max_position_embeddings=SEQ,
        pad_token_id=tok.pad_token_id,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
    )
    save_model(LlamaForCausalLM(config), tok, root / "base", ModelInfo(format="full"))
    data = root / "data"
    data.mkdir()
    (data / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return "file://" + str(root / "base"), "file://" + str(data)


def ours(root: Path, base: str, data: str, steps: int, packing: bool) -> float:
    spec = FinetuneJobSpec.model_validate(
        {
            "model": {"base": {"uri": base}},
            "dataset": {"uri": data},
            "objective": "instruction",
            "method": "lora",
            "lora": {"r": LORA_R, "alpha": 16, "dropout": 0.0, "targetModules": ["all-linear"]},
            "promptTemplate": TEMPLATE,
            "hyperparameters": {
                "maxSteps": steps,
                "batchSize": BATCH,
                "maxSeqLength": SEQ,
                "packing": packing,
                "learningRate": 1e-3,
                "loggingSteps": steps,
            },
        }
    )
    out = root / f"out-{'packed' if packing else 'padded'}"
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
    return json.loads((out / "results.json").read_text())["tokens_per_second"]


def baseline(root: Path, base: str, data: str, steps: int) -> float:
    """A plain Trainer + peft LoRA with a padding collator, as the peft docs show."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, Trainer, TrainingArguments

    base_path = root / "base"
    tokenizer = load_tokenizer(base_path)
    records = [
        json.loads(line) for line in (root / "data" / "train.jsonl").read_text().splitlines()
    ]
    examples = tokenize(records, tokenizer, "instruction", SEQ, TEMPLATE).examples
    rows = [{"input_ids": e.input_ids, "labels": e.labels} for e in examples]
    counted = {"tokens": 0}

    def collate(batch: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        width = max(len(b["input_ids"]) for b in batch)
        ids = torch.full((len(batch), width), tokenizer.pad_token_id)
        labels = torch.full((len(batch), width), -100)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for i, b in enumerate(batch):
            n = len(b["input_ids"])
            ids[i, :n], labels[i, :n], mask[i, :n] = (
                torch.tensor(b["input_ids"]),
                torch.tensor(b["labels"]),
                1,
            )
        counted["tokens"] += int(mask.sum())
        return {"input_ids": ids, "labels": labels, "attention_mask": mask}

    model = AutoModelForCausalLM.from_pretrained(str(base_path))
    lora = LoraConfig(
        r=LORA_R,
        lora_alpha=16,
        lora_dropout=0.0,
        target_modules="all-linear",
        task_type="CAUSAL_LM",
    )
    model = get_peft_model(model, lora)
    args = TrainingArguments(
        output_dir=str(root / "trainer"),
        per_device_train_batch_size=BATCH,
        max_steps=steps,
        learning_rate=1e-3,
        logging_steps=steps,
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        dataloader_num_workers=0,
        disable_tqdm=True,
        remove_unused_columns=False,
        seed=42,
    )
    trainer = Trainer(model=model, args=args, train_dataset=rows, data_collator=collate)
    metrics = trainer.train().metrics
    return counted["tokens"] / metrics["train_runtime"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps (< 1 minute)")
    args = parser.parse_args(argv)
    steps = 40 if args.quick else 200
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="kubetune-bench-") as tmp:
        root = Path(tmp)
        base, data = build(root, n=steps * BATCH)
        base_tps = baseline(root, base, data, steps)
        padded_tps = ours(root, base, data, steps, packing=False)
        packed_tps = ours(root, base, data, steps, packing=True)
    print(f"transformers.Trainer + peft LoRA: {base_tps:10.0f} tokens/s", file=sys.stderr)
    print(
        f"kubetune finetune (padded):       {padded_tps:10.0f} tokens/s  "
        f"{padded_tps / base_tps:.2f}x (goal >= 1.0x)",
        file=sys.stderr,
    )
    print(
        f"kubetune finetune (packed):       {packed_tps:10.0f} tokens/s  "
        f"{packed_tps / base_tps:.2f}x (goal >= 1.5x)",
        file=sys.stderr,
    )
    print(
        json.dumps(
            {
                "bench": "finetune_throughput",
                "metric": "lora_tokens_per_second_packed",
                "value": round(packed_tps, 1),
                "baseline": round(base_tps, 1),
                "ratio": round(packed_tps / base_tps, 3),
                "goal": 1.5,
                "unit": "tokens/s",
                "padded": {
                    "value": round(padded_tps, 1),
                    "ratio": round(padded_tps / base_tps, 3),
                    "goal": 1.0,
                },
                "steps": steps,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
