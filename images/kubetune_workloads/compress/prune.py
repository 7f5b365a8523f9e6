"""The ``prune`` step: magnitude (unstructured) and structured pruning, made permanent.

- ``method: magnitude`` zeroes the smallest weights of the target linear layers, ranked per
  layer (``scope: layer``) or across all of them (``scope: global``), with
  ``torch.nn.utils.prune``; ``prune.remove`` then bakes the zeros into the weights.
- ``method: structured`` removes whole units. ``channels`` (MLP intermediate channels) and
  ``heads`` (attention heads) physically shrink the layers (see :mod:`.shrink`); ``rows``
  zeroes whole output rows of each target layer.

Zeros in dense safetensors still take their bytes, which the report says.
"""

from __future__ import annotations

import fnmatch
from typing import Any

from kubetune.api.compression import PruneStep

from kubetune_workloads.compress import shrink
from kubetune_workloads.compress.state import WorkingModel
from kubetune_workloads.errors import WorkloadError, invalid_input

DENSE_NOTE = (
    "zeros are stored densely in safetensors, so this sparsity alone saves no bytes on disk or "
    "in memory; it pays off only with sparse kernels or a structured method that removes units."
)


def check(step: PruneStep, has_adapter: bool, quantized: bool) -> None:
    """Refuse settings and model states this prune step cannot handle."""
    if not 0 <= step.sparsity < 1:
        raise invalid_input(f"prune sparsity must be in [0, 1), got {step.sparsity}")
    if has_adapter:
        raise WorkloadError(
            "AdapterNotMerged",
            "the input is a LoRA adapter; add a mergeAdapter step before prune.",
        )
    if quantized:
        raise WorkloadError(
            "PruneQuantized",
            "cannot prune quantized weights; put the prune step before quantize.",
        )
    if step.method == "structured" and step.scope == "global":
        raise invalid_input(
            "structured pruning ranks units within each layer so that every layer keeps the "
            "same shape; set scope: layer"
        )
    if step.method == "structured" and step.granularity != "rows" and step.target_modules:
        raise invalid_input(
            f"targetModules cannot be combined with structured {step.granularity} pruning: "
            "every decoder layer is pruned alike so the config describes them all"
        )


def prune_model(working: WorkingModel, step: PruneStep) -> WorkingModel:
    """Apply one prune step to the working model (in place) and record what it did."""
    check(step, working.has_adapter, working.is_quantized)
    if step.method == "structured" and step.granularity in ("channels", "heads"):
        if step.granularity == "channels":
            note = shrink.prune_mlp_channels(working.model, step.sparsity)
        else:
            note = shrink.prune_attention_heads(working.model, step.sparsity)
        working.notes.append(f"prune: {note}")
        return working
    targets = select_linear(working.model, step.target_modules)
    if step.method == "magnitude":
        _magnitude(targets, step)
        what = f"magnitude ({step.scope})"
    else:
        _rows(targets, step.sparsity)
        what = "structured rows (per layer)"
    working.notes.append(
        f"prune: {what} to {step.sparsity:.0%} on {len(targets)} linear layers; {DENSE_NOTE}"
    )
    return working


def select_linear(model: Any, patterns: list[str] | None) -> list[tuple[str, Any]]:
    """Linear layers to prune: those matching ``patterns``, else all but the output head."""
    import torch

    output = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    found: list[tuple[str, Any]] = []
    for name, module in model.named_modules():
        if not isinstance(module, torch.nn.Linear):
            continue
        if patterns is None:
            if module is not output:
                found.append((name, module))
        elif any(_matches(name, p) for p in patterns):
            found.append((name, module))
    if not found:
        wanted = f"matching {patterns}" if patterns else "besides the output head"
        raise invalid_input(f"prune found no linear layers {wanted} in this model")
    return found


def _matches(name: str, pattern: str) -> bool:
    return (
        name == pattern
        or name.rsplit(".", 1)[-1] == pattern
        or fnmatch.fnmatchcase(name, pattern)
        or fnmatch.fnmatchcase(name, f"*.{pattern}")
    )


def _magnitude(targets: list[tuple[str, Any]], step: PruneStep) -> None:
    from torch.nn.utils import prune

    if step.scope == "global":
        params = [(module, "weight") for _, module in targets]
        prune.global_unstructured(params, pruning_method=prune.L1Unstructured, amount=step.sparsity)
    else:
        for _, module in targets:
            prune.l1_unstructured(module, "weight", amount=step.sparsity)
    for _, module in targets:
        prune.remove(module, "weight")


def _rows(targets: list[tuple[str, Any]], sparsity: float) -> None:
    from torch.nn.utils import prune

    for _, module in targets:
        prune.ln_structured(module, "weight", amount=sparsity, n=2, dim=0)
        prune.remove(module, "weight")
