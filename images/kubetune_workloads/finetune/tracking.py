"""Training curves and speed: ``metrics.jsonl``, live progress, tokens/s and MFU."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import torch

from kubetune_workloads.progress import ProgressReporter

# Dense bf16 tensor-core peak FLOP/s by GPU product name (no sparsity).
PEAK_BF16_FLOPS = {
    "H200": 989e12,
    "H100": 989e12,
    "H800": 989e12,
    "A100": 312e12,
    "A800": 312e12,
    "L40S": 362e12,
    "L4": 121e12,
    "A10": 125e12,
    "4090": 165e12,
}


def peak_flops(device: torch.device) -> float | None:
    """The GPU's dense bf16 peak, when known."""
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    for key, flops in PEAK_BF16_FLOPS.items():
        if key in name:
            return flops
    return None


def flops_per_token(model: Any, adapter: bool) -> float:
    """6N for full training, 4N with a frozen base (no weight gradients); N excludes the
    input embedding table, which is a lookup, not a matmul."""
    total = sum(p.numel() for p in model.parameters())
    embed = model.get_input_embeddings()
    n = total - (embed.weight.numel() if embed is not None else 0)
    return (4 if adapter else 6) * n


class MetricsLog:
    """Appends one JSON object per logging step / evaluation to ``metrics.jsonl`` and mirrors
    the latest values to the live progress reporter."""

    def __init__(self, path: Path | None, reporter: ProgressReporter | None) -> None:
        self.path = path
        self.reporter = reporter
        self.last: dict[str, Any] = {}

    def restore(self, lines: list[str], up_to_step: int) -> None:
        """Keep the curves of a resumed run up to its checkpoint."""
        if self.path is None:
            return
        kept = [line for line in lines if line.strip() and json.loads(line)["step"] <= up_to_step]
        self.path.write_text("".join(line + "\n" for line in kept))

    def write(self, record: dict[str, Any]) -> None:
        clean = {k: v for k, v in record.items() if v is not None}
        self.last.update(clean)
        if self.path is not None:
            with self.path.open("a", encoding="utf-8") as handle:
                handle.write(json.dumps(clean) + "\n")

    def progress(self, **fields: Any) -> None:
        if self.reporter is not None:
            self.reporter.update(**fields)


class Throughput:
    """Tokens per second over a window and over the whole run."""

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.window_start = self.started
        self.window_tokens = 0
        self.total_tokens = 0

    def add(self, tokens: int) -> None:
        self.window_tokens += tokens
        self.total_tokens += tokens

    def window_rate(self) -> float:
        now = time.perf_counter()
        rate = self.window_tokens / max(now - self.window_start, 1e-9)
        self.window_start, self.window_tokens = now, 0
        return rate

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def overall_rate(self) -> float:
        return self.total_tokens / max(self.elapsed, 1e-9)


def perplexity(loss: float | None) -> float | None:
    if loss is None or not math.isfinite(loss):
        return None
    return math.exp(min(loss, 50.0))
