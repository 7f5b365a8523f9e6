"""``spec.performance`` applied to a loaded model: attention path, fused kernels, micro-batch
and gradient checkpointing from measured memory, ``torch.compile`` (in that order)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kubetune.api.steps import FinetuneStepSpec

from kubetune_workloads.finetune import distributed as dist
from kubetune_workloads.finetune.attention import AttentionPath, apply_attention, resolve_attention
from kubetune_workloads.finetune.batching import collate
from kubetune_workloads.finetune.data import Example
from kubetune_workloads.finetune.kernels import apply_kernels, maybe_compile, resolve_kernels
from kubetune_workloads.finetune.memory_probe import MemoryPlan, auto_plan, set_checkpointing
from kubetune_workloads.finetune.runtime import Runtime


@dataclass
class SpeedSetup:
    """What :func:`prepare` chose; ``batch_size``/``accumulation`` are what the loop uses."""

    attention: AttentionPath
    batch_size: int
    accumulation: int
    kernels: list[str] = field(default_factory=list)
    compiled: bool = False
    memory: MemoryPlan | None = None

    def summary(self) -> dict[str, Any]:
        """For ``results.json``."""
        found: dict[str, Any] = {
            "attention": self.attention.implementation,
            "varlen": self.attention.varlen,
            "kernels": self.kernels,
            "compiled": self.compiled,
            "micro_batch": self.batch_size,
            "gradient_accumulation_steps": self.accumulation,
        }
        if self.memory is not None:
            found["gradient_checkpointing"] = self.memory.gradient_checkpointing
            found["memory_budget_bytes"] = self.memory.budget_bytes
            found["memory_probes"] = [
                [p.batch_size, p.checkpointing, p.peak_bytes] for p in self.memory.probes
            ]
        return found


def prepare(
    model: Any,
    step: FinetuneStepSpec,
    rows: list[Example],
    rt: Runtime,
    env: dist.DistEnv,
    pad_id: int,
    sequence_model: bool = True,
) -> SpeedSetup:
    """Apply ``spec.performance`` to the (unwrapped) model. ``sequence_model`` False (an LSTM,
    a preference criterion's own batches) keeps the plain padded layout."""
    perf, hp = step.spec.performance, step.spec.hyperparameters
    packed = sequence_model and any(len(getattr(row, "lengths", ())) > 1 for row in rows)
    path = resolve_attention(perf.attention, rt.device, packed)
    if not sequence_model:
        path = AttentionPath(path.implementation, varlen=False)
    path = apply_attention(model, path, strict=perf.attention != "auto")
    setup = SpeedSetup(path, hp.batch_size, hp.gradient_accumulation_steps)
    setup.kernels = apply_kernels(model, resolve_kernels(perf.kernels, rt.device, model))
    if perf.auto_micro_batch and sequence_model:
        make_inputs = _probe_inputs(rows, pad_id, rt, path.varlen)
        plan = auto_plan(
            model,
            make_inputs,
            rt,
            hp.batch_size,
            hp.gradient_accumulation_steps,
            perf.memory_headroom,
            hp.gradient_checkpointing,
        )
        plan = _agree(plan, env, rt, hp.batch_size * hp.gradient_accumulation_steps)
        set_checkpointing(model, plan.gradient_checkpointing)
        setup.memory, setup.batch_size, setup.accumulation = (
            plan,
            plan.batch_size,
            plan.accumulation,
        )
    setup.compiled = maybe_compile(model, perf.compile, rt.device)
    return setup


def _probe_inputs(
    rows: list[Example], pad_id: int, rt: Runtime, varlen: bool
) -> Callable[[int], dict[str, Any]]:
    """Micro-batches of the longest training rows (the worst case a step can meet)."""
    longest = sorted(rows, key=lambda r: len(r.input_ids), reverse=True)

    def make(size: int) -> dict[str, Any]:
        picked = [longest[i % len(longest)] for i in range(size)]
        batch: dict[str, Any] = collate(picked, pad_id, rt.device, varlen=varlen)["inputs"]
        return batch

    return make


def _agree(plan: MemoryPlan, env: dist.DistEnv, rt: Runtime, rows_per_step: int) -> MemoryPlan:
    """Every rank trains with the same micro-batch: the smallest any rank chose, with
    checkpointing when any rank needed it."""
    if not env.enabled:
        return plan
    import torch
    import torch.distributed as torch_dist

    smallest = torch.tensor([plan.batch_size], device=rt.device)
    checkpointing = torch.tensor([int(plan.gradient_checkpointing)], device=rt.device)
    torch_dist.all_reduce(smallest, op=torch_dist.ReduceOp.MIN)
    torch_dist.all_reduce(checkpointing, op=torch_dist.ReduceOp.MAX)
    chosen, needs_checkpointing = int(smallest.item()), bool(checkpointing.item())
    return MemoryPlan(
        chosen, -(-rows_per_step // chosen), needs_checkpointing, plan.budget_bytes, plan.probes
    )


def collate_for(setup: SpeedSetup) -> Callable[..., dict[str, Any]]:
    """The loop's collate function for the chosen layout."""
    return functools.partial(collate, varlen=setup.attention.varlen)
