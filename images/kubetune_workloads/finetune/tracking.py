"""Training curves and speed: ``metrics.jsonl``, live progress, tokens/s, memory and MFU.

:class:`MetricsLog` is the one place the loop reports to: each record goes to
``metrics.jsonl`` (which the HTML training report is built from), to the live progress server
and to the run's *sinks* (TensorBoard event files, MLflow; :mod:`.watchers`). Markers
(``checkpoint``, ``resume``, ``rollback``) are lines ``{"step": N, "event": ...}``.
"""

from __future__ import annotations

import json
import logging
import math
import resource
import time
from pathlib import Path
from typing import Any, Protocol

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
    return float((4 if adapter else 6) * n)


log = logging.getLogger(__name__)
# metrics.jsonl key -> the curve's name in TensorBoard and MLflow.
CURVES = {
    "loss": "train/loss",
    "eval_loss": "eval/loss",
    "eval_perplexity": "eval/perplexity",
    "learning_rate": "train/learning_rate",
    "grad_norm": "train/grad_norm",
    "epoch": "train/epoch",
    "tokens_per_second": "perf/tokens_per_second",
    "tokens_seen": "perf/tokens_seen",
    "peak_memory_gib": "perf/peak_memory_gib",
}


def curve_points(record: dict[str, Any]) -> dict[str, float]:
    """The record's numbers under their curve names (other keys, e.g. preference metrics,
    under ``train/KEY`` or ``eval/KEY``)."""
    points: dict[str, float] = {}
    for key, value in record.items():
        if key == "step" or isinstance(value, bool) or not isinstance(value, int | float):
            continue
        if not math.isfinite(value):
            continue
        default = f"eval/{key[5:]}" if key.startswith("eval_") else f"train/{key}"
        points[CURVES.get(key, default)] = float(value)
    return points


class MetricSink(Protocol):
    """Where curves go besides ``metrics.jsonl`` (rank 0 only)."""

    def write(self, record: dict[str, Any]) -> None: ...

    def mark(self, step: int, event: str) -> None: ...


def peak_memory_gib(device: torch.device) -> float:
    """Peak memory of this process so far: CUDA allocations on a GPU, else resident RAM."""
    if device.type == "cuda":
        return float(torch.cuda.max_memory_allocated(device)) / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


class MetricsLog:
    """Appends one JSON object per logging step / evaluation to ``metrics.jsonl``, mirrors the
    latest values to the live progress reporter and hands every record to the sinks. A sink
    that fails is dropped with a warning: tracking never stops training."""

    def __init__(
        self,
        path: Path | None,
        reporter: ProgressReporter | None,
        sinks: list[MetricSink] | None = None,
    ) -> None:
        self.path = path
        self.reporter = reporter
        self.sinks = list(sinks or [])
        self.last: dict[str, Any] = {}

    def mark(self, step: int, event: str) -> None:
        """Record a checkpoint, resume or rollback at ``step``."""
        self._append({"step": step, "event": event})
        self._fan_out("mark", step, event)

    def _append(self, record: dict[str, Any]) -> None:
        if self.path is not None:
            with self.path.open("a", encoding="utf-8") as handle:
                handle.write(json.dumps(record) + "\n")

    def _fan_out(self, method: str, *args: Any) -> None:
        for sink in list(self.sinks):
            try:
                getattr(sink, method)(*args)
            except Exception as exc:  # a tracking failure never stops training
                log.warning("%s stopped: %s", type(sink).__name__, exc)
                self.sinks.remove(sink)

    def restore(self, lines: list[str], up_to_step: int) -> None:
        """Keep the curves of a resumed run up to its checkpoint."""
        if self.path is None:
            return
        kept = [line for line in lines if line.strip() and json.loads(line)["step"] <= up_to_step]
        self.path.write_text("".join(line + "\n" for line in kept))

    def write(self, record: dict[str, Any]) -> None:
        clean = {k: v for k, v in record.items() if v is not None}
        self.last.update(clean)
        self._append(clean)
        self._fan_out("write", clean)

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
