"""LoRA training speed on one CUDA GPU: a ~1B Llama-config model with random weights, bf16,
packed 2048-token sequences, through kubetune's finetune step, beside a plain
``transformers.Trainer`` + peft LoRA baseline on the same model and data.

Reports tokens/s and MFU = tokens/s x 4N / peak bf16 FLOP/s (4N FLOPs per token for LoRA: the
frozen base needs no weight gradients; N excludes the input embedding lookup). Goal: MFU >= 35%
on an H100.

    python bench/gpu_lora_mfu.py               # on a CUDA machine, a few minutes
    python bench/gpu_lora_mfu.py --dry-run     # tiny config on CPU: checks the script only

The last line is one JSON object (see docs/architecture.md, "Benchmarks").
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from kubetune.api.finetune import FinetuneJobSpec
from kubetune.api.steps import FinetuneStepSpec, InputArtifact, Producer
from kubetune_workloads.finetune import run
from kubetune_workloads.finetune.tracking import flops_per_token, peak_flops
from kubetune_workloads.modelio import ModelInfo, save_model
from kubetune_workloads.tokenizer_train import train_tokenizer

ONE_B = {  # Llama-3.2-1B shape
    "hidden_size": 2048,
    "intermediate_size": 8192,
    "num_hidden_layers": 16,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "vocab_size": 128256,
}
TINY = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "vocab_size": 512,
}
WORDS = ["alpha", "beta", "gamma", "delta", "river", "stone", "light", "north", "green", "cloud"]


def build(root: Path, shape: dict[str, int], seq: int, tokens_needed: int) -> tuple[str, str]:
    from transformers import LlamaConfig, LlamaForCausalLM

    rng = random.Random(0)
    docs, total = [], 0
    while total < tokens_needed * 1.2:
        doc = " ".join(rng.choice(WORDS) + rng.choice(["", ".", ","]) for _ in range(400))
        docs.append(doc)
        total += 400
    tok = train_tokenizer(docs[:50], "bpe", vocab_size=min(300, shape["vocab_size"]))
    config = LlamaConfig(
        **shape,
        max_position_embeddings=max(seq, 2048),
        pad_token_id=tok.pad_token_id,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        dtype="bfloat16",
    )
    with torch.device("cpu"):
        model = LlamaForCausalLM(config).to(torch.bfloat16)
    save_model(model, tok, root / "base", ModelInfo(format="full", family="llama"))
    data = root / "data"
    data.mkdir()
    (data / "train.jsonl").write_text("".join(json.dumps({"text": d}) + "\n" for d in docs))
    return "file://" + str(root / "base"), "file://" + str(data)


def ours(root: Path, base: str, data: str, steps: int, batch: int, seq: int) -> dict[str, Any]:
    spec = FinetuneJobSpec.model_validate(
        {
            "model": {"base": {"uri": base}},
            "dataset": {"uri": data},
            "objective": "continued-pretraining",
            "method": "lora",
            "lora": {"r": 16, "alpha": 32, "dropout": 0.0, "targetModules": ["all-linear"]},
            "hyperparameters": {
                "maxSteps": steps,
                "batchSize": batch,
                "maxSeqLength": seq,
                "precision": "bf16" if torch.cuda.is_available() else "fp32",
                "learningRate": 1e-4,
                "loggingSteps": max(1, steps // 4),
            },
        }
    )
    out = root / "out"
    result = run(
        FinetuneStepSpec(
            producer=Producer(kind="FinetuneJob", name="mfu", namespace="bench", run_id="1"),
            output_uri="file://" + str(out),
            spec=spec,
            dataset=InputArtifact(uri=data),
            model=InputArtifact(uri=base),
        )
    )
    if not result.ok:
        raise SystemExit(f"kubetune run failed: {result.reason}: {result.message}")
    return json.loads((out / "results.json").read_text())


def baseline(root: Path, steps: int, batch: int, seq: int) -> tuple[float, Any]:
    """Plain Trainer + peft LoRA, bf16, the same packed blocks; returns (tokens/s, model)."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer, Trainer, TrainingArguments

    tok = AutoTokenizer.from_pretrained(str(root / "base"))
    stream: list[int] = []
    for line in (root / "data" / "train.jsonl").read_text().splitlines():
        stream += tok(json.loads(line)["text"])["input_ids"] + [tok.eos_token_id]
    rows = [
        {"input_ids": stream[i : i + seq], "labels": stream[i : i + seq]}
        for i in range(0, len(stream) - seq, seq)
    ]
    cuda = torch.cuda.is_available()
    model = AutoModelForCausalLM.from_pretrained(
        str(root / "base"), dtype=torch.bfloat16 if cuda else torch.float32
    )
    lora = LoraConfig(
        r=16, lora_alpha=32, lora_dropout=0.0, target_modules="all-linear", task_type="CAUSAL_LM"
    )
    model = get_peft_model(model, lora)

    def collate(batch_rows: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        return {k: torch.tensor([r[k] for r in batch_rows]) for k in ("input_ids", "labels")}

    args = TrainingArguments(
        output_dir=str(root / "trainer"),
        per_device_train_batch_size=batch,
        max_steps=steps,
        learning_rate=1e-4,
        bf16=cuda,
        logging_steps=steps,
        save_strategy="no",
        report_to=[],
        use_cpu=not cuda,
        remove_unused_columns=False,
        disable_tqdm=True,
    )
    trainer = Trainer(model=model, args=args, train_dataset=rows, data_collator=collate)
    start = time.perf_counter()
    runtime = trainer.train().metrics.get("train_runtime") or (time.perf_counter() - start)
    return steps * batch * seq / runtime, model


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true", help="tiny config, CPU allowed")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq", type=int, default=2048)
    parser.add_argument("--quick", action="store_true", help="fewer steps")
    args = parser.parse_args(argv)
    if not args.dry_run and not torch.cuda.is_available():
        raise SystemExit("no CUDA device: run on a GPU machine, or pass --dry-run")
    shape = TINY if args.dry_run else ONE_B
    seq = 128 if args.dry_run else args.seq
    steps = 4 if args.dry_run else (10 if args.quick else args.steps)
    batch = 2 if args.dry_run else args.batch
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    with tempfile.TemporaryDirectory(prefix="kubetune-mfu-") as tmp:
        root = Path(tmp)
        base, data = build(root, shape, seq, tokens_needed=steps * batch * seq * 2)
        results = ours(root, base, data, steps, batch, seq)
        base_tps, model = baseline(root, steps, batch, seq)
        fpt = flops_per_token(model, adapter=True)
    peak = peak_flops(device)
    mfu = results.get("mfu")
    base_mfu = base_tps * fpt / peak if peak else None
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"device {name}; params {results['total_params'] / 1e9:.3f}B", file=sys.stderr)
    print(f"kubetune: {results['tokens_per_second']:.0f} tokens/s, MFU {mfu}", file=sys.stderr)
    print(f"Trainer:  {base_tps:.0f} tokens/s, MFU {base_mfu}", file=sys.stderr)
    value, base_value = (mfu, base_mfu) if peak else (results["tokens_per_second"], base_tps)
    print(
        json.dumps(
            {
                "bench": "gpu_lora_mfu",
                "metric": "mfu" if peak else "tokens_per_second",
                "value": value,
                "baseline": base_value,
                "ratio": value / base_value if value and base_value else None,
                "goal": 0.35 if peak else None,
                "unit": "fraction of peak bf16 FLOP/s" if peak else "tokens/s",
                "tokens_per_second": results["tokens_per_second"],
                "baseline_tokens_per_second": base_tps,
                "device": name,
                "dry_run": args.dry_run,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
