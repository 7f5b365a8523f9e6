"""Compression benchmark: int8, nf4 and 50 % pruning + nf4 against the unmodified model.

Builds a quickstart-shaped model (Llama, hidden 128, 2 layers, 4 heads / 2 KV heads, as in
``examples/quickstart/02-pretrain.yaml``), trains it briefly on the quickstart corpus
(``examples/quickstart/data/general.txt``), then runs the real ``compress`` step once per
variant. Each run measures the unmodified model and the compressed one itself, so every ratio
compares two measurements taken in the same run on the same machine.

Prints, per variant, the size ratio (bytes after / before), the perplexity delta and the latency
ratio; the last line is the JSON summary (value: nf4 compression factor, baseline: the
unmodified model, i.e. 1.0).

    python bench/compression_report.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import math
import random
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "examples" / "quickstart" / "data" / "general.txt"
FALLBACK_TEXT = [
    "The river runs past the old mill and into the sea.",
    "To reset your password open Settings then Security and choose Reset password.",
    "Rain fell over the quiet town while the baker opened his shop.",
    "Shared links can expire after seven days if you set an expiry date.",
] * 50
VARIANTS: dict[str, list[dict[str, Any]]] = {
    "int8": [{"quantize": {"bits": 8}}],
    "nf4": [{"quantize": {"bits": 4, "quantType": "nf4", "computeDtype": "fp32"}}],
    "prune50+nf4": [
        {"prune": {"method": "magnitude", "sparsity": 0.5}},
        {"quantize": {"bits": 4, "quantType": "nf4", "computeDtype": "fp32"}},
    ],
}


def paragraphs() -> list[str]:
    if CORPUS.is_file():
        found = [p.strip() for p in CORPUS.read_text().split("\n\n") if p.strip()]
        if len(found) >= 20:
            return found
    return FALLBACK_TEXT


def build_model(work: Path, texts: list[str], steps: int, vocab: int) -> float:
    """Train the quickstart-shaped model for ``steps`` steps and save it; returns seconds."""
    import torch
    from kubetune_workloads.modelio import ModelInfo, save_model
    from kubetune_workloads.tokenizer_train import train_tokenizer
    from transformers import LlamaConfig, LlamaForCausalLM

    start = time.perf_counter()
    tok = train_tokenizer(texts, "bpe", vocab_size=vocab)
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=128,
        intermediate_size=344,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    torch.manual_seed(7)
    model = LlamaForCausalLM(config)
    ids: list[int] = []
    for text in texts:
        ids.extend(tok(text)["input_ids"] + [tok.eos_token_id])
    seq, batch = 128, 8
    blocks = torch.tensor(ids[: len(ids) // seq * seq]).view(-1, seq)
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3)
    rng = random.Random(7)
    model.train()
    for _ in range(steps):
        rows = torch.tensor([rng.randrange(len(blocks)) for _ in range(batch)])
        loss = model(input_ids=blocks[rows], labels=blocks[rows]).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    save_model(model.eval(), tok, work / "base", ModelInfo(format="full", family="llama"))
    return time.perf_counter() - start


def write_data(work: Path, texts: list[str]) -> None:
    from kubetune_workloads.datasetio import DatasetInfo

    split = max(1, len(texts) // 20)
    data = work / "data"
    data.mkdir()
    for name, rows in (("train", texts[:-split]), ("validation", texts[-split:])):
        lines = "".join(json.dumps({"text": t}) + "\n" for t in rows)
        (data / f"{name}.jsonl").write_text(lines)
    info = DatasetInfo(records={"train": len(texts) - split, "validation": split})
    (data / "dataset.json").write_text(info.to_json())


def compress(work: Path, name: str, steps: list[dict[str, Any]], report: dict[str, Any]) -> Any:
    from kubetune.api.compression import CompressionSpec
    from kubetune.api.steps import CompressStepSpec, InputArtifact, Producer
    from kubetune_workloads.compress import run

    base, data = f"file://{work / 'base'}", f"file://{work / 'data'}"
    spec = CompressStepSpec(
        producer=Producer(kind="Compression", name=name, namespace="bench", run_id="1"),
        output_uri=f"file://{work / name}",
        spec=CompressionSpec.model_validate(
            {"model": {"uri": base}, "steps": steps, "dataset": {"uri": data}, "report": report}
        ),
        model=InputArtifact(uri=base),
        dataset=InputArtifact(uri=data),
    )
    result = run(spec)
    if not result.ok:
        raise SystemExit(f"{name}: {result.reason}: {result.message}")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller run, under a minute")
    args = parser.parse_args()
    texts = paragraphs()
    if args.quick:
        texts, steps, vocab = texts[:200], 20, 1024
        report = {"maxEvalBatches": 1, "maxNewTokens": 8, "prompts": ["The river", "Rain fell"]}
    else:
        steps, vocab = 150, 2048
        report = {"maxEvalBatches": 8, "maxNewTokens": 32}
    with tempfile.TemporaryDirectory(prefix="kubetune-bench-") as tmp:
        work = Path(tmp)
        train_s = build_model(work, texts, steps, vocab)
        write_data(work, texts)
        print(f"model: quickstart-shaped Llama, trained {steps} steps in {train_s:.1f}s")
        print(f"{'variant':<13} {'size':>7} {'ppl before':>11} {'ppl after':>10} {'ppl delta':>10}")
        print(f"{'':<13} {'ratio':>7} {'':>11} {'':>10} {'':>10} {'latency ratio':>14}")
        results: dict[str, dict[str, float]] = {}
        for name, variant in VARIANTS.items():
            m = compress(work, name, variant, report).metrics
            results[name] = {
                "sizeRatio": m["sizeRatio"],
                "perplexityDelta": m["perplexityDelta"],
                "latencyRatio": m["latencyRatio"],
                "memoryRatio": m["memoryRatio"],
            }
            print(
                f"{name:<13} {m['sizeRatio']:>7.3f} {m['perplexityBefore']:>11.2f} "
                f"{m['perplexityAfter']:>10.2f} {m['perplexityDelta']:>+10.3f} "
                f"{m['latencyRatio']:>14.2f}"
            )
    nf4 = results["nf4"]["sizeRatio"]
    value = 1.0 / nf4 if nf4 > 0 else math.inf
    summary = {
        "bench": "compression_report",
        "metric": "nf4 compression factor (bytes on disk, unmodified / nf4)",
        "value": round(value, 4),
        "baseline": 1.0,
        "ratio": round(value / 1.0, 4),
        "goal": 1.5,
        "unit": "x",
        "variants": results,
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
