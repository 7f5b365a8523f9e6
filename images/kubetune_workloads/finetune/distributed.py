"""Data parallelism on PyTorch's own engine: torchrun env, DDP or FSDP, collectives.

torchrun (launched by the operator's Indexed Job, or by hand) sets ``RANK``, ``WORLD_SIZE`` and
``LOCAL_RANK``; one process per GPU, or several CPU processes on the gloo backend. Every rank
trains; only rank 0 writes checkpoints, outputs and the result. A single process runs without
any process group.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, cast

import torch
from torch import nn


@dataclass(frozen=True)
class DistEnv:
    """This process's place in the job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    strategy: str = "ddp"

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def fsdp(self) -> bool:
        return self.enabled and self.strategy == "fsdp"


def init_distributed(strategy: str = "ddp") -> DistEnv:
    """Join the process group torchrun describes (nccl on GPUs, gloo on CPUs)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistEnv(strategy=strategy)
    import torch.distributed as dist

    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        if torch.cuda.is_available():
            torch.cuda.set_device(local_rank)
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return DistEnv(rank=rank, world_size=world, local_rank=local_rank, strategy=strategy)


def shutdown(env: DistEnv) -> None:
    if env.enabled:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()


def barrier(env: DistEnv) -> None:
    if env.enabled:
        import torch.distributed as dist

        dist.barrier()


def all_reduce_sum(env: DistEnv, values: list[float], device: torch.device) -> list[float]:
    """Element-wise sum of a few numbers over all ranks (identity on one process)."""
    if not env.enabled:
        return values
    import torch.distributed as dist

    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return tensor.tolist()


def broadcast_object(env: DistEnv, obj: Any) -> Any:
    """Rank 0's object on every rank."""
    if not env.enabled:
        return obj
    import torch.distributed as dist

    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def wrap_model(model: nn.Module, env: DistEnv, device: torch.device) -> nn.Module:
    """DDP (any method) or FSDP (full fine-tuning: one shard unit per transformer block)."""
    if not env.enabled:
        return model
    if env.fsdp:
        from torch.distributed.fsdp import fully_shard

        block_names = set(getattr(model, "_no_split_modules", None) or [])
        for module in model.modules():
            if type(module).__name__ in block_names:
                fully_shard(module)
        fully_shard(model)
        return model
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(
        model, device_ids=[device.index] if device.type == "cuda" else None
    )


def unwrap(model: nn.Module) -> nn.Module:
    """The model inside a DDP wrapper (FSDP2 shards in place and needs no unwrapping)."""
    return getattr(model, "module", model)


def full_model_state(model: nn.Module, env: DistEnv) -> dict[str, torch.Tensor] | None:
    """FSDP: the gathered full state dict (collective; rank 0 gets it). Others: None."""
    if not env.fsdp:
        return None
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    state = get_model_state_dict(
        model, options=StateDictOptions(full_state_dict=True, cpu_offload=True)
    )
    # A full, CPU-offloaded state dict holds plain tensors (its declared type also admits
    # DTensors and nested containers).
    return cast("dict[str, torch.Tensor]", state)


def trainable_state(model: nn.Module, env: DistEnv) -> dict[str, torch.Tensor]:
    """The weights a checkpoint keeps: trainable parameters (FSDP: gathered, collective)."""
    if env.fsdp:
        full = full_model_state(model, env) or {}
        names = {n for n, p in model.named_parameters() if p.requires_grad}
        return {k: v for k, v in full.items() if k in names}
    return {n: p for n, p in unwrap(model).named_parameters() if p.requires_grad}


def load_trainable_state(model: nn.Module, env: DistEnv, weights: dict[str, torch.Tensor]) -> None:
    """Copy checkpointed weights back into the (possibly sharded) model."""
    if env.fsdp:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

        set_model_state_dict(
            model, dict(weights), options=StateDictOptions(full_state_dict=True, strict=False)
        )
        return
    params = dict(unwrap(model).named_parameters())
    missing = [name for name, p in params.items() if p.requires_grad and name not in weights]
    if missing:
        raise ValueError(f"checkpoint lacks {len(missing)} trainable tensors, e.g. {missing[0]}")
    with torch.no_grad():
        for name, tensor in weights.items():
            params[name].copy_(tensor)


def optimizer_state(model: nn.Module, optimizer: Any, env: DistEnv) -> dict[str, Any]:
    if env.fsdp:
        from torch.distributed.checkpoint.state_dict import (
            StateDictOptions,
            get_optimizer_state_dict,
        )

        return get_optimizer_state_dict(
            model, optimizer, options=StateDictOptions(full_state_dict=True, cpu_offload=True)
        )
    state: dict[str, Any] = optimizer.state_dict()
    return state


def load_optimizer_state(
    model: nn.Module, optimizer: Any, env: DistEnv, state: dict[str, Any]
) -> None:
    if env.fsdp:
        from torch.distributed.checkpoint.state_dict import (
            StateDictOptions,
            set_optimizer_state_dict,
        )

        set_optimizer_state_dict(
            model, optimizer, state, options=StateDictOptions(full_state_dict=True)
        )
        return
    optimizer.load_state_dict(state)
