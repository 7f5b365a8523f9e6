"""Where and how numbers are computed: device, precision, autocast, seeds."""

from __future__ import annotations

import contextlib
import random
from dataclasses import dataclass
from typing import Any, Literal

import torch
from kubetune.api.finetune import Precision

PrecisionName = Literal["bf16", "fp16", "fp32"]
TORCH_DTYPES: dict[str, torch.dtype] = {
    "bf16": torch.bfloat16,
    "fp16": torch.float16,
    "fp32": torch.float32,
}


@dataclass(frozen=True)
class Runtime:
    """The device this process trains on and the precision of its matmuls."""

    device: torch.device
    precision: PrecisionName

    @property
    def is_cuda(self) -> bool:
        return self.device.type == "cuda"

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        """Mixed precision for forward passes (weights stay in their own dtype)."""
        if self.precision == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=TORCH_DTYPES[self.precision])

    def grad_scaler(self) -> torch.amp.GradScaler | None:
        """A loss scaler for fp16 (bf16 and fp32 need none)."""
        if self.precision != "fp16":
            return None
        return torch.amp.GradScaler(self.device.type)


def resolve_precision(requested: Precision, device: torch.device) -> PrecisionName:
    """``auto`` is bf16 on a GPU that supports it, else fp32."""
    if requested != "auto":
        return requested
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return "bf16"
    return "fp32"


def select_device(local_rank: int) -> torch.device:
    """The process's GPU (by local rank) when there is one, else the CPU."""
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def seed_everything(seed: int) -> None:
    """Seed Python and torch (CPU and every GPU)."""
    random.seed(seed)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
