"""Auto micro-batch and gradient checkpointing, chosen from memory measured on the device.

``spec.performance.autoMicroBatch``: the micro-batch is the largest candidate (powers of two up
to ``batchSize``, and ``batchSize``) whose forward+backward on the longest training rows peaks
under the budget (device memory less ``memoryHeadroom``), found by a binary search over real
steps. Without gradient checkpointing first; only when no candidate fits is checkpointing
turned on and the search repeated. Gradient accumulation grows so that an optimizer step still
sees ``batchSize x gradientAccumulationSteps`` rows.

What a probe measures: on CUDA, the allocator's peak (``max_memory_allocated``); on CPU (no
allocator statistics), the weights and buffers plus every tensor autograd saves for backward
(unique storages) plus the gradients. Both add the AdamW state the optimizer will hold (two
fp32 tensors per trainable parameter). A CUDA out-of-memory error counts as "does not fit".
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from kubetune_workloads.errors import WorkloadError

log = logging.getLogger(__name__)

Measure = Callable[[int, bool], int | None]  # (micro-batch, checkpointing) -> peak bytes | OOM


@dataclass(frozen=True)
class Probe:
    """One measured forward+backward."""

    batch_size: int
    checkpointing: bool
    peak_bytes: int | None  # None: out of memory


@dataclass(frozen=True)
class MemoryPlan:
    """The chosen micro-batch, accumulation and checkpointing, with the evidence."""

    batch_size: int
    accumulation: int
    gradient_checkpointing: bool
    budget_bytes: int
    probes: tuple[Probe, ...] = field(default_factory=tuple)


def candidates(max_batch: int) -> list[int]:
    """Powers of two below ``max_batch``, and ``max_batch`` itself, ascending."""
    found = {max_batch}
    size = 1
    while size < max_batch:
        found.add(size)
        size *= 2
    return sorted(found)


def largest_fitting(sizes: list[int], fits: Callable[[int], bool]) -> int | None:
    """The largest of ascending ``sizes`` for which ``fits`` holds, assuming that memory grows
    with the batch (binary search: ``log2`` probes)."""
    low, high, best = 0, len(sizes) - 1, None
    while low <= high:
        middle = (low + high) // 2
        if fits(sizes[middle]):
            best, low = sizes[middle], middle + 1
        else:
            high = middle - 1
    return best


def decide(
    max_batch: int, accumulation: int, budget: int, measure: Measure, checkpointing: bool
) -> MemoryPlan:
    """The plan from ``measure`` (pure decision logic; the device work is in ``measure``).

    ``checkpointing`` True means the user already turned it on: only that mode is probed.
    """
    probes: list[Probe] = []

    def fits(size: int, with_checkpointing: bool) -> bool:
        peak = measure(size, with_checkpointing)
        probes.append(Probe(size, with_checkpointing, peak))
        return peak is not None and peak <= budget

    modes = (True,) if checkpointing else (False, True)
    for mode in modes:
        chosen = largest_fitting(
            candidates(max_batch), functools.partial(fits, with_checkpointing=mode)
        )
        if chosen is not None:
            rows_per_step = max_batch * accumulation
            return MemoryPlan(
                chosen, math.ceil(rows_per_step / chosen), mode, budget, tuple(probes)
            )
    raise WorkloadError(
        "OutOfMemory",
        f"performance.autoMicroBatch: not even a micro-batch of 1 fits in {budget / 2**30:.2f} "
        "GiB with gradient checkpointing; lower maxSeqLength, use qlora, or a larger device",
    )


def _adam_state_bytes(model: Any) -> int:
    return sum(2 * 4 * p.numel() for p in model.parameters() if p.requires_grad)


def _static_bytes(model: Any) -> int:
    tensors = [*model.parameters(), *model.buffers()]
    return sum(t.numel() * t.element_size() for t in tensors)


def measure_step(model: Any, inputs: dict[str, Any], rt: Any) -> int | None:
    """Peak bytes of one forward+backward of ``inputs`` (see the module docstring), or None
    when the device runs out of memory. Gradients are dropped afterwards."""
    device = rt.device
    saved: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        saved[storage.data_ptr()] = storage.nbytes()
        return tensor

    try:
        if device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor), rt.autocast():
            loss = model(**inputs, use_cache=False).loss
        loss.float().backward()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
            peak = int(torch.cuda.max_memory_allocated(device))
        else:
            grads = sum(g.numel() * g.element_size() for g in _grads(model))
            peak = _static_bytes(model) + sum(saved.values()) + grads
        return peak + _adam_state_bytes(model)
    except torch.OutOfMemoryError:
        return None
    finally:
        model.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.empty_cache()


def _grads(model: Any) -> list[torch.Tensor]:
    return [p.grad for p in model.parameters() if p.grad is not None]


def device_budget(model: Any, device: torch.device, headroom: float) -> int:
    """Bytes a training step may peak at: the device's memory less the headroom (on CPU, the
    memory available now plus what the model already holds)."""
    if device.type == "cuda":
        total = torch.cuda.get_device_properties(device).total_memory
        return int(total * (1 - headroom))
    import psutil

    available = psutil.virtual_memory().available + _static_bytes(model)
    return int(available * (1 - headroom))


def set_checkpointing(model: Any, enabled: bool) -> None:
    """Turn the transformer's gradient checkpointing on or off (non-reentrant)."""
    target = model.get_base_model() if hasattr(model, "get_base_model") else model
    if not getattr(target, "supports_gradient_checkpointing", False):
        return
    if enabled:
        target.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        if hasattr(model, "enable_input_require_grads"):
            model.enable_input_require_grads()
    else:
        target.gradient_checkpointing_disable()


def auto_plan(
    model: Any,
    make_inputs: Callable[[int], dict[str, Any]],
    rt: Any,
    max_batch: int,
    accumulation: int,
    headroom: float,
    checkpointing: bool,
) -> MemoryPlan:
    """Probe the device and return the plan; leaves checkpointing as the plan says. The RNG
    state is kept, so auto mode does not change the run's randomness."""
    budget = device_budget(model, rt.device, headroom)
    was_training = model.training
    model.train()

    def measure(size: int, with_checkpointing: bool) -> int | None:
        set_checkpointing(model, with_checkpointing)
        return measure_step(model, make_inputs(size), rt)

    devices = [rt.device] if rt.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        plan = decide(max_batch, accumulation, budget, measure, checkpointing)
    set_checkpointing(model, plan.gradient_checkpointing)
    model.train(was_training)
    log.info(
        "auto micro-batch: %d x %d accumulation, gradient checkpointing %s (budget %.2f GiB, "
        "%d probes)",
        plan.batch_size, plan.accumulation, plan.gradient_checkpointing,
        plan.budget_bytes / 2**30, len(plan.probes),
    )  # fmt: skip
    return plan
