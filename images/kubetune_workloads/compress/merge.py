"""The ``mergeAdapter`` step: fold LoRA weights into a full-precision base."""

from __future__ import annotations

from kubetune.api.compression import MergeAdapterStep

from kubetune_workloads.compress.state import WorkingModel
from kubetune_workloads.errors import WorkloadError

TORCH_DTYPES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}


def check(has_adapter: bool, quantized: bool) -> None:
    """Refuse a merge without an adapter, or into a quantized base."""
    if not has_adapter:
        raise WorkloadError(
            "NoAdapter",
            "mergeAdapter needs an adapter artifact (a LoRA adapter with its base), but the "
            "model is a full model; remove the mergeAdapter step.",
        )
    if quantized:
        raise WorkloadError(
            "UnsupportedMerge",
            "refusing to merge a LoRA adapter into a quantized base: the merge is lossy. "
            "Point the adapter at a full-precision base, merge, then quantize.",
        )


def merge_adapter(working: WorkingModel, step: MergeAdapterStep) -> WorkingModel:
    """Merge the adapter in float32 (exact), then cast the merged weights to ``step.dtype``.

    Refuses a model without an adapter and a quantized base: peft's merge into quantized
    weights rounds the adapter away, so a lossy result would pass for a merged model.
    """
    import torch

    check(working.has_adapter, working.is_quantized)
    model = working.model.to(torch.float32)
    merged = model.merge_and_unload()
    merged = merged.to(getattr(torch, TORCH_DTYPES[step.dtype]))
    merged.eval()
    working.model = merged
    working.has_adapter = False
    working.notes.append(f"mergeAdapter: LoRA merged in float32, weights saved as {step.dtype}.")
    return working
