"""Optimizer and learning-rate schedule from the hyperparameters."""

from __future__ import annotations

import math
from typing import Any

import torch
from kubetune.api.finetune import Hyperparameters

from kubetune_workloads.errors import invalid_input


def warmup_steps(hp: Hyperparameters, total_steps: int) -> int:
    """Warmup in optimizer steps: ``warmupSteps``, or ``ceil(warmupRatio * total)``.

    transformers 5 folded the ratio into ``warmup_steps`` (a float < 1 is read as a ratio);
    kubetune keeps two explicit fields and converts the ratio here, against the real number of
    optimizer steps (after gradient accumulation and data parallelism).
    """
    if hp.warmup_steps is not None:
        return min(hp.warmup_steps, total_steps)
    if hp.warmup_ratio:
        return math.ceil(hp.warmup_ratio * total_steps)
    return 0


def build_optimizer(model: Any, hp: Hyperparameters, device: torch.device) -> Any:
    """AdamW (torch: fused on GPUs, foreach on CPU), 8-bit AdamW (bitsandbytes) or SGD with
    momentum.

    Weight decay applies to matrices only, never to biases and norm weights.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise invalid_input("nothing to train: the model has no trainable parameters")
    groups = [
        {"params": [p for p in params if p.ndim >= 2], "weight_decay": hp.weight_decay},
        {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
    ]
    groups = [g for g in groups if g["params"]]
    if hp.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=hp.learning_rate, momentum=0.9)
    if hp.optimizer in ("adamw_8bit", "paged_adamw_8bit"):
        import bitsandbytes as bnb

        cls = (
            bnb.optim.PagedAdamW8bit if hp.optimizer == "paged_adamw_8bit" else bnb.optim.AdamW8bit
        )
        return cls(groups, lr=hp.learning_rate)
    if adamw_fused(device, params):
        return torch.optim.AdamW(groups, lr=hp.learning_rate, fused=True)
    return torch.optim.AdamW(groups, lr=hp.learning_rate, foreach=True)


def adamw_fused(device: torch.device, params: list[torch.nn.Parameter]) -> bool:
    """Fused AdamW (one kernel for every parameter, no host sync) on CUDA with floating-point
    parameters; elsewhere the multi-tensor ``foreach`` implementation."""
    return device.type == "cuda" and all(p.dtype.is_floating_point for p in params)


def build_scheduler(optimizer: Any, hp: Hyperparameters, total_steps: int) -> Any:
    """The LR schedule: warmup, then linear/cosine decay or constant."""
    from transformers import get_scheduler

    return get_scheduler(
        hp.scheduler,
        optimizer,
        num_warmup_steps=warmup_steps(hp, total_steps),
        num_training_steps=total_steps,
    )
