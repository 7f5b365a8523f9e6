"""Where a LoRA training step's time goes, for kubetune and for ``transformers.Trainer`` +
peft on the same model and rows: ``torch.profiler`` over the training loop alone (loading and
saving excluded), kernel time grouped by kind (matmul, attention, norms, loss, optimizer,
copies, other), the loop's wall time from CUDA events, the GPU's idle share, and host syncs
(``aten::item``/``_local_scalar_dense``, ``cudaStreamSynchronize``) per step.

    python bench/gpu_profile.py                       # CUDA, 1.5b shape, a few minutes
    python bench/gpu_profile.py --device cpu          # tiny shape on CPU: checks the script
    python bench/gpu_profile.py --out DIR             # also DIR/gpu_profile.{json,md}

The markdown table goes into docs/performance.md. The last line is one JSON object with the
per-step milliseconds (``ratio``: the baseline's step time over kubetune's).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gpu_common as common
import torch
from torch.profiler import ProfilerActivity, profile

CATEGORIES = [  # first match wins; kernel names on CUDA, operator names on CPU
    ("optimizer", r"adam|multi_tensor|foreach|_fused_"),
    ("attention", r"flash|fmha|attention|flex|sdpa|attn"),
    ("loss", r"cross_entropy|nll_loss|log_softmax|softmax_backward|liger.*(ce|cross)"),
    ("norm", r"rms|norm"),
    ("matmul", r"gemm|cutlass|xmma|nvjet|sm90|sm80|aten::(mm|addmm|bmm|matmul|linear)$"),
    ("copy", r"memcpy|memset|aten::(copy_|to|_to_copy)$"),
]
SYNCS = r"aten::item$|aten::_local_scalar_dense$|cudaStreamSynchronize|cudaDeviceSynchronize"


def category(name: str) -> str:
    lowered = name.lower()
    for label, pattern in CATEGORIES:
        if re.search(pattern, lowered):
            return label
    return "other"


class Profiled:
    """Runs the training loop under the profiler and CUDA events; keeps the breakdown."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.breakdown: dict[str, float] = {}
        self.wall_ms = 0.0
        self.syncs = 0

    def __call__(self, train: Callable[[], Any]) -> Any:
        cuda = self.device.type == "cuda"
        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
        start_event = torch.cuda.Event(enable_timing=True) if cuda else None
        end_event = torch.cuda.Event(enable_timing=True) if cuda else None
        with profile(activities=activities) as prof:
            if start_event is not None:
                start_event.record()
            started = time.perf_counter()
            result = train()
            if end_event is not None:
                end_event.record()
                torch.cuda.synchronize()
            wall = time.perf_counter() - started
        self.wall_ms = (
            start_event.elapsed_time(end_event) if start_event and end_event else wall * 1e3
        )
        self._summarize(prof.key_averages(), cuda)
        return result

    def _summarize(self, events: Any, cuda: bool) -> None:
        totals: dict[str, float] = {}
        for event in events:
            if re.search(SYNCS, event.key):
                self.syncs += int(event.count)
            on_device = getattr(event, "device_type", None) == torch.autograd.DeviceType.CUDA
            if cuda and not on_device:
                continue
            if not cuda and not event.key.startswith("aten::"):
                continue
            micros = event.self_device_time_total if cuda else event.self_cpu_time_total
            totals[category(event.key)] = totals.get(category(event.key), 0.0) + micros / 1e3
        self.breakdown = totals


def run_both(args: argparse.Namespace, device: torch.device) -> dict[str, Profiled]:
    profiled = {"kubetune": Profiled(device), "trainer": Profiled(device)}
    with tempfile.TemporaryDirectory(prefix="kubetune-profile-") as tmp:
        root = Path(tmp)
        uris = common.build(
            root, args.shape, args.seq, args.steps * args.batch * args.seq * 2, device
        )
        settings = {"steps": args.steps, "batch": args.batch, "seq": args.seq, "device": device}
        performance = {"attention": args.attention, "kernels": args.kernels}
        # the baseline first: Liger (kernels auto) patches transformers' classes process-wide
        _, model = common.trainer_baseline(root, around=profiled["trainer"], **settings)
        del model
        common.release(device)
        common.kubetune(
            root, uris, performance=performance, around=profiled["kubetune"], **settings
        )
        common.release(device)
    return profiled


def table(profiled: dict[str, Profiled], steps: int) -> tuple[str, dict[str, Any]]:
    labels = [label for label, _ in CATEGORIES] + ["other"]
    per_step: dict[str, dict[str, float]] = {}
    for name, run in profiled.items():
        busy = sum(run.breakdown.values())
        row = {label: run.breakdown.get(label, 0.0) / steps for label in labels}
        row["kernels (sum)"] = busy / steps
        row["idle / host (wall - kernels)"] = max(run.wall_ms - busy, 0.0) / steps
        row["wall (CUDA events)"] = run.wall_ms / steps
        row["host syncs per step"] = run.syncs / steps
        per_step[name] = row
    rows = [
        [label, per_step["kubetune"][label], per_step["trainer"][label]]
        for label in per_step["kubetune"]
    ]
    text = common.markdown_table(["ms per optimizer step", "kubetune", "Trainer + peft"], rows)
    return text, per_step


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    parser.add_argument("--shape", default="1.5b")
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq", type=int, default=2048)
    parser.add_argument("--attention", default="auto")
    parser.add_argument("--kernels", default="auto")
    parser.add_argument("--quick", action="store_true", help="same output, 4 steps")
    parser.add_argument("--out", help="directory for gpu_profile.json and .md")
    args = parser.parse_args(argv)
    if args.device == "cpu":
        args.shape, args.seq, args.steps, args.batch = "tiny", 64, 2, 2
    elif args.quick:
        args.steps = 4
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    device = common.pick_device(args.device)
    profiled = run_both(args, device)
    text, per_step = table(profiled, args.steps)
    name = common.device_name(device)
    print(text, file=sys.stderr)
    ours, base = (
        per_step["kubetune"]["wall (CUDA events)"],
        per_step["trainer"]["wall (CUDA events)"],
    )
    summary = {
        "bench": "gpu_profile",
        "metric": "ms_per_step",
        "value": ours,
        "baseline": base,
        "ratio": base / ours if ours else None,
        "goal": None,
        "unit": "ms per optimizer step (ratio = baseline / kubetune)",
        "device": name,
        "shape": args.shape,
        "per_step": per_step,
    }
    note = f"Device: {name}; shape {args.shape}; batch {args.batch} x {args.seq}; "
    note += f"{args.steps} steps\n\n"
    common.write_outputs(args.out, "gpu_profile", summary, note + text)
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
