"""QLoRA memory and speed on one CUDA GPU: a Llama-3.1-8B-shaped model with random weights
(no download), NF4 base (double quantization, bf16 compute), LoRA r=16 on all linear layers,
2048-token blocks, through kubetune's finetune step beside ``transformers.Trainer`` + peft +
bitsandbytes at the same micro-batch and gradient-checkpointing setting, in the same run.

Reports the allocator's peak GPU memory of each run (reset between them) and tokens/s.
Goals (issue 20): peak memory <= 0.6x the baseline's, tokens/s >= 1.5x.

    python bench/gpu_qlora_memory.py                    # CUDA, needs bitsandbytes; minutes
    python bench/gpu_qlora_memory.py --device cpu       # tiny shape on CPU: checks the script
    python bench/gpu_qlora_memory.py --out DIR          # also DIR/gpu_qlora_memory.{json,md}

The last line is one JSON object (see docs/architecture.md, "Benchmarks"); ``ratio`` is the
baseline's peak memory over kubetune's (higher is better), ``tokens_per_second_ratio`` the
speed ratio.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import gpu_common as common
import torch

GOAL_MEMORY, GOAL_SPEED = 1 / 0.6, 1.5


def measure(args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="kubetune-qlora-", dir=args.tmp) as tmp:
        root = Path(tmp)
        uris = common.build(
            root, args.shape, args.seq, args.steps * args.batch * args.seq * 2, device
        )
        settings = {"steps": args.steps, "batch": args.batch, "seq": args.seq, "device": device}
        checkpointing = not args.no_gradient_checkpointing
        # the baseline first: Liger (kernels auto) patches transformers' classes process-wide
        common.reset_peak(device)
        base_tps, model = common.trainer_baseline(
            root, qlora=True, gradient_checkpointing=checkpointing, **settings
        )
        base_peak = common.peak_bytes(device)
        del model
        common.reset_peak(device)
        performance = {"attention": args.attention, "kernels": args.kernels}
        ours = common.kubetune(
            root, uris, qlora=True, gradient_checkpointing=checkpointing,
            performance=performance, **settings,
        )  # fmt: skip
        ours_peak = common.peak_bytes(device)
        common.release(device)
    return {
        "shape": args.shape,
        "params": ours["total_params"],
        "peak_bytes": ours_peak,
        "baseline_peak_bytes": base_peak,
        "tokens_per_second": float(ours["tokens_per_second"]),
        "baseline_tokens_per_second": base_tps,
        "gradient_checkpointing": checkpointing,
        "performance": ours.get("performance"),
    }


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    parser.add_argument("--shape", default="8b")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--seq", type=int, default=2048)
    parser.add_argument("--attention", default="auto")
    parser.add_argument("--kernels", default="auto")
    parser.add_argument("--no-gradient-checkpointing", action="store_true")
    parser.add_argument("--quick", action="store_true", help="5 steps")
    parser.add_argument("--tmp", help="where the 16 GB random model is written (default TMPDIR)")
    parser.add_argument("--out", help="directory for gpu_qlora_memory.json and .md")
    args = parser.parse_args(argv)
    if args.device == "cpu":
        args.shape, args.seq, args.steps, args.batch = "tiny", 64, 2, 2
    elif args.quick:
        args.steps = 5
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    device = common.pick_device(args.device)
    row = measure(args, device)
    name = common.device_name(device)
    peak, base_peak = row["peak_bytes"], row["baseline_peak_bytes"]
    memory_ratio = base_peak / peak if peak and base_peak else None
    speed_ratio = row["tokens_per_second"] / row["baseline_tokens_per_second"]
    gib = lambda b: None if b is None else b / 2**30  # noqa: E731
    print(
        f"{name} {row['shape']}: kubetune peak {gib(peak)} GiB, {row['tokens_per_second']:.0f} "
        f"tokens/s; Trainer+peft+bnb peak {gib(base_peak)} GiB, "
        f"{row['baseline_tokens_per_second']:.0f} tokens/s",
        file=sys.stderr,
    )
    summary = {
        "bench": "gpu_qlora_memory",
        "metric": "peak_memory_gib" if peak else "tokens_per_second",
        "value": gib(peak) if peak else row["tokens_per_second"],
        "baseline": gib(base_peak) if peak else row["baseline_tokens_per_second"],
        "ratio": memory_ratio if peak else speed_ratio,
        "tokens_per_second_ratio": speed_ratio,
        "goal": {"memory_ratio": GOAL_MEMORY, "tokens_per_second_ratio": GOAL_SPEED},
        "unit": "GiB (ratio = baseline / kubetune)" if peak else "tokens/s (no allocator on CPU)",
        "device": name,
        "result": row,
    }
    table = common.markdown_table(
        ["run", "peak GiB", "tokens/s"],
        [
            ["kubetune (NF4 + LoRA r=16)", gib(peak), row["tokens_per_second"]],
            ["Trainer + peft + bitsandbytes", gib(base_peak), row["baseline_tokens_per_second"]],
            [
                "ratio (baseline/kubetune memory; kubetune/baseline speed)",
                memory_ratio,
                speed_ratio,
            ],
        ],
    )
    note = f"Device: {name}; shape {row['shape']}; batch {args.batch} x {args.seq} tokens\n\n"
    common.write_outputs(args.out, "gpu_qlora_memory", summary, note + table)
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
