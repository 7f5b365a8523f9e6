"""Benchmark: batched vs sequential greedy generation in the evaluate step.

Generates for 256 prompts of varied length with a tiny Llama (built from a config, no
download), once with the evaluate step's batched generator (``batchSize`` 32, left padding)
and once one prompt at a time (the baseline), checks that the greedy outputs are identical,
and prints the throughput ratio. Goal: >= 3x. ``--quick`` uses 64 prompts.

    python bench/eval_throughput.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time

from kubetune.api.evaluation import GenerationSpec, PromptCase
from kubetune_workloads.evaluate.generation import Generator
from kubetune_workloads.tokenizer_train import train_tokenizer

GOAL = 3.0
TEXT = (
    "the cat sat on the mat rain fell over the quiet town your files sync across every device "
    "open settings then security to reset your password shared links expire after seven days"
)
WORDS = TEXT.split()


def build_model() -> tuple[object, object]:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = train_tokenizer([" ".join(WORDS)] * 8, "bpe", vocab_size=300, min_frequency=1)
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=256,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    model = LlamaForCausalLM(config)
    model.eval()
    return model, tok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="64 prompts (under a minute)")
    parser.add_argument("--prompts", type=int, default=None)
    parser.add_argument("--max-new-tokens", type=int, default=24)
    args = parser.parse_args(argv)
    count = args.prompts or (64 if args.quick else 256)

    model, tok = build_model()
    spec = GenerationSpec(max_new_tokens=args.max_new_tokens, batch_size=32)
    generator = Generator(model, tok, spec)
    rng = random.Random(0)
    cases = [
        PromptCase(prompt=" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 40))))
        for _ in range(count)
    ]
    prompts = [generator.encode(c) for c in cases]
    generator.generate(prompts[:4])  # warm-up

    started = time.perf_counter()
    batched = generator.generate(prompts)
    batched_s = time.perf_counter() - started
    started = time.perf_counter()
    sequential = generator.generate(prompts, batch_size=1)
    sequential_s = time.perf_counter() - started

    same = sum(a.text == b.text for a, b in zip(batched, sequential, strict=True))
    print(f"prompts={count} batched={batched_s:.2f}s sequential={sequential_s:.2f}s")
    print(f"identical greedy outputs: {same}/{count}")
    value, baseline = count / batched_s, count / sequential_s
    print(
        json.dumps(
            {
                "bench": "eval_throughput",
                "metric": "prompts_per_second",
                "value": round(value, 3),
                "baseline": round(baseline, 3),
                "ratio": round(value / baseline, 3),
                "goal": GOAL,
                "unit": "prompts/s",
                "identical": same == count,
            }
        )
    )
    return 0 if same == count else 1


if __name__ == "__main__":
    sys.exit(main())
