"""Size measurements of a model: parameters, bytes on disk, memory when loaded, sparsity."""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from kubetune_workloads.modelio import ModelInfo


def safetensors_files(path: Path) -> list[Path]:
    return sorted(p for p in path.glob("*.safetensors") if p.is_file())


def bytes_on_disk(path: Path) -> int:
    """Sum of the sizes of the ``*.safetensors`` files of a model directory."""
    return sum(p.stat().st_size for p in safetensors_files(path))


def artifact_bytes(path: Path, info: ModelInfo, base_path: Path | None) -> int:
    """Bytes of the weights a model artifact needs: an adapter counts its base too."""
    total = bytes_on_disk(path)
    if info.format == "adapter" and base_path is not None:
        total += bytes_on_disk(base_path)
    return total


def tensor_bytes(path: Path) -> dict[str, int]:
    """Bytes of each tensor stored in a directory's safetensors files (read from the headers)."""
    sizes: dict[str, int] = {}
    for file in safetensors_files(path):
        with file.open("rb") as handle:
            (length,) = struct.unpack("<Q", handle.read(8))
            header = json.loads(handle.read(length))
        for name, entry in header.items():
            if name != "__metadata__":
                start, end = entry["data_offsets"]
                sizes[name] = end - start
    return sizes


def count_parameters(model: Any) -> int:
    """Logical parameter count (a packed 4-bit tensor counts the values it holds)."""
    total = 0
    for param in model.parameters():
        state = getattr(param, "quant_state", None)
        total += int(math.prod(state.shape)) if state is not None else param.numel()
    return total


def memory_footprint(model: Any) -> int:
    """Bytes of the parameters and buffers of the loaded model."""
    if hasattr(model, "get_memory_footprint"):
        return int(model.get_memory_footprint())
    return sum(t.numel() * t.element_size() for t in (*model.parameters(), *model.buffers()))


def sparsity(model: Any) -> float:
    """Fraction of exactly-zero weights over the linear layers (output head and LoRA excluded)."""
    zeros = total = 0
    for weight in _linear_weights(model):
        zeros += int((weight == 0).sum())
        total += weight.numel()
    return zeros / total if total else 0.0


def _linear_weights(model: Any) -> Iterator[Any]:
    """Linear weights as dense tensors (4-bit weights are dequantized one layer at a time)."""
    import torch

    output = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    for name, module in model.named_modules():
        if not isinstance(module, torch.nn.Linear) or module is output or "lora_" in name:
            continue
        weight = module.weight
        state = getattr(weight, "quant_state", None)
        if state is not None:
            import bitsandbytes.functional as bnbf

            yield bnbf.dequantize_4bit(weight.data, state)
        else:
            yield weight.data
