"""LoRA training speed on one CUDA GPU: Llama shapes with random weights (``1.5b``: the
Llama-3.2-1B dimensions with an untied head, the shape of the first measurement; ``1b``: the
published Llama-3.2-1B), bf16, 2048-token blocks, LoRA r=16 on all linear layers, through
kubetune's finetune step beside a plain ``transformers.Trainer`` + peft baseline on the same
model and rows, in the same run.

MFU = tokens/s x 4N / peak bf16 FLOP/s (4N: a frozen base needs no weight gradients; N
excludes the input embedding lookup). Goals (issue 20): MFU >= 0.40 on H100/H200 and >= 1.8x
the baseline's tokens/s.

    python bench/gpu_lora_mfu.py                       # CUDA: both shapes, minutes
    python bench/gpu_lora_mfu.py --shapes 1.5b --variants auto:auto,sdpa:none   # ablation
    python bench/gpu_lora_mfu.py --device cpu          # tiny shape on CPU: checks the script
    python bench/gpu_lora_mfu.py --out DIR             # also DIR/gpu_lora_mfu.{json,md}

The last line is one JSON object (see docs/architecture.md, "Benchmarks").
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
from kubetune_workloads.finetune.tracking import flops_per_token, peak_flops

GOAL_MFU, GOAL_RATIO = 0.40, 1.8


def variants(text: str) -> list[dict[str, Any]]:
    """``attention:kernels[:compile]`` items, comma-separated, e.g. ``auto:auto,sdpa:none``."""
    found = []
    for item in text.split(","):
        attention, kernels, *rest = item.split(":")
        found.append({"attention": attention, "kernels": kernels, "compile": rest == ["compile"]})
    return found


def label(performance: dict[str, Any]) -> str:
    return f"{performance['attention']}:{performance['kernels']}" + (
        ":compile" if performance["compile"] else ""
    )


def measure_shape(
    args: argparse.Namespace, shape: str, device: torch.device, workload: str, settings: str
) -> list[dict[str, Any]]:
    """The baseline, then kubetune once per variant in ``settings`` (Liger patches
    transformers' classes for the whole process, so the baseline runs first), on one shape."""
    rows = []
    with tempfile.TemporaryDirectory(prefix="kubetune-mfu-") as tmp:
        root = Path(tmp)
        tokens = args.steps * args.batch * args.seq * 2
        uris = common.build(root, shape, args.seq, tokens, device, workload)
        base_tps, model = common.trainer_baseline(
            root, steps=args.steps, batch=args.batch, seq=args.seq, device=device,
            workload=workload,
        )  # fmt: skip
        fpt = flops_per_token(model, adapter=True)
        del model
        common.release(device)
        ordered = sorted(variants(settings), key=lambda v: v["kernels"] != "none")
        for index, performance in enumerate(ordered):
            ours = common.kubetune(
                root, uris, steps=args.steps, batch=args.batch, seq=args.seq, device=device,
                performance=performance, name=f"out-{index}", workload=workload,
            )  # fmt: skip
            common.release(device)
            row = _row(shape, label(performance), ours, base_tps, fpt, device)
            rows.append({"workload": workload, **row})
    return rows


def _row(
    shape: str,
    variant: str,
    ours: dict[str, Any],
    base_tps: float,
    fpt: float,
    device: torch.device,
) -> dict[str, Any]:
    peak = peak_flops(device)
    ours_tps = float(ours["tokens_per_second"])
    return {
        "shape": shape,
        "variant": variant,
        "params": ours["total_params"],
        "tokens_per_second": ours_tps,
        "baseline_tokens_per_second": base_tps,
        "ratio": ours_tps / base_tps,
        "mfu": ours_tps * fpt / peak if peak else None,
        "baseline_mfu": base_tps * fpt / peak if peak else None,
        "performance": ours.get("performance"),
    }


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    parser.add_argument("--shapes", default="1.5b,1b", help="comma-separated: 1.5b, 1b")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq", type=int, default=2048)
    parser.add_argument(
        "--variants",
        default="auto:auto",
        help="kubetune settings to measure, attention:kernels[:compile] comma-separated; the "
        "first is the headline (e.g. auto:auto,sdpa:none,flex_attention:none,auto:auto:compile)",
    )
    parser.add_argument(
        "--workloads",
        default="cpt",
        help="cpt (continued pretraining on full blocks, as the first measurement) and/or "
        "packed (instruction examples of 30-700 tokens packed into rows; the baseline pads)",
    )
    parser.add_argument(
        "--packed-variants",
        default="auto:auto,sdpa:none,flex_attention:none",
        help="variants for the packed workload, measured on the first shape only",
    )
    parser.add_argument("--quick", action="store_true", help="10 steps")
    parser.add_argument("--dry-run", action="store_true", help="same as --device cpu")
    parser.add_argument("--out", help="directory for gpu_lora_mfu.json and .md")
    args = parser.parse_args(argv)
    if args.dry_run or args.device == "cpu":
        args.device, args.shapes, args.seq, args.steps, args.batch = "cpu", "tiny", 64, 3, 2
    elif args.quick:
        args.steps = 10
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    device = common.pick_device(args.device)
    rows = []
    for workload in args.workloads.split(","):
        shapes = args.shapes.split(",") if workload == "cpt" else args.shapes.split(",")[:1]
        settings = args.variants if workload == "cpt" else args.packed_variants
        for shape in shapes:
            rows += measure_shape(args, shape, device, workload, settings)
    name = common.device_name(device)
    for row in rows:
        print(
            f"{name} {row['workload']} {row['shape']} ({row['params'] / 1e9:.3f}B) "
            f"{row['variant']}: kubetune "
            f"{row['tokens_per_second']:.0f} tokens/s MFU {row['mfu']}, Trainer+peft "
            f"{row['baseline_tokens_per_second']:.0f} tokens/s MFU {row['baseline_mfu']}, "
            f"ratio {row['ratio']:.2f}x",
            file=sys.stderr,
        )
    headline = label(variants(args.variants)[0])
    first = next((r for r in rows if r["variant"] == headline and r["workload"] == "cpt"), rows[0])
    has_peak = first["mfu"] is not None
    summary = {
        "bench": "gpu_lora_mfu",
        "metric": "mfu" if has_peak else "tokens_per_second",
        "value": first["mfu"] if has_peak else first["tokens_per_second"],
        "baseline": first["baseline_mfu"] if has_peak else first["baseline_tokens_per_second"],
        "ratio": first["ratio"],
        "goal": {"mfu": GOAL_MFU, "ratio": GOAL_RATIO},
        "unit": "fraction of peak bf16 FLOP/s" if has_peak else "tokens/s",
        "device": name,
        "shapes": rows,
        "settings": {
            k: getattr(args, k)
            for k in ("steps", "batch", "seq", "variants", "workloads", "packed_variants")
        },
    }
    table = common.markdown_table(
        ["workload", "shape", "params", "kubetune (attention:kernels)", "kubetune tok/s",
         "Trainer+peft tok/s", "ratio", "MFU", "baseline MFU"],
        [
            [r["workload"], r["shape"], f"{r['params'] / 1e9:.2f}B", r["variant"],
             r["tokens_per_second"],
             r["baseline_tokens_per_second"], r["ratio"], r["mfu"], r["baseline_mfu"]]
            for r in rows
        ],
    )  # fmt: skip
    common.write_outputs(args.out, "gpu_lora_mfu", summary, f"Device: {name}\n\n{table}")
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
