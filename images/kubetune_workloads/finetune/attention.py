"""Which attention kernel trains the model, and how packed documents stay apart on it.

Paths (``spec.performance.attention``), each keeping packed documents from attending to each
other:

- ``flash_attention_2`` / ``flash_attention_3``: FlashAttention's varlen kernels through
  transformers' attention backends. A micro-batch is flattened into one padding-free row with
  ``cu_seq_lens`` (:func:`batching.collate` with ``varlen``), as ``DataCollatorWithFlattening``
  does: no mask, no padding compute. Needs the ``flash_attn`` (FA2) or ``flash_attn_interface``
  (FA3, Hopper) package and a CUDA device.
- ``flex_attention``: PyTorch flex attention; transformers turns the restarting
  ``position_ids`` into a document block mask, so fully masked blocks are skipped. Trains on
  CUDA only: torch has no flex-attention backward on CPU (forward works, which the CPU tests
  use to check it against eager).
- ``sdpa`` (the fallback) and ``eager``: a materialized block-diagonal causal mask for packed
  rows (SDPA leaves its flash path for the masked one), the causal fast path for unpacked ones.

``auto`` takes the first available of FA3 (Hopper), FA2, flex (CUDA, packed rows only: on
unpacked rows SDPA's causal kernel needs no mask at all), SDPA. transformers' ``kernels``
backend is not offered: it downloads kernels at run time.
"""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass
from typing import Any

import torch

from kubetune_workloads.errors import invalid_input

log = logging.getLogger(__name__)

VARLEN = ("flash_attention_2", "flash_attention_3")
FLASH_PACKAGES = {"flash_attention_2": "flash_attn", "flash_attention_3": "flash_attn_interface"}


@dataclass(frozen=True)
class AttentionPath:
    """The transformers ``attn_implementation`` and the batch layout it needs."""

    implementation: str
    varlen: bool = False


def unavailable_reason(implementation: str, device: torch.device) -> str | None:
    """Why ``implementation`` cannot train on ``device``, or None when it can."""
    if implementation in ("sdpa", "eager"):
        return None
    if device.type != "cuda":
        if implementation == "flex_attention":
            return "torch has no flex-attention backward on CPU"
        return f"{implementation} needs a CUDA device"
    if implementation == "flex_attention":
        if importlib.util.find_spec("torch.nn.attention.flex_attention") is None:
            return f"torch {torch.__version__} has no flex attention"
        return None
    package = FLASH_PACKAGES[implementation]
    if importlib.util.find_spec(package) is None:
        return f"the {package} package is not installed"
    if implementation == "flash_attention_3" and torch.cuda.get_device_capability(device)[0] < 9:
        return "FlashAttention-3 needs a Hopper (sm90) or newer GPU"
    return None


def resolve_attention(requested: str, device: torch.device, packed: bool = True) -> AttentionPath:
    """The path for ``spec.performance.attention`` (``packed``: rows hold several documents);
    a named path that cannot run is an error."""
    if requested == "auto":
        candidates = ["flash_attention_3", "flash_attention_2"]
        candidates += ["flex_attention"] if packed else []
        for candidate in candidates:
            if unavailable_reason(candidate, device) is None:
                return AttentionPath(candidate, candidate in VARLEN)
        return AttentionPath("sdpa")
    reason = unavailable_reason(requested, device)
    if reason is not None:
        raise invalid_input(
            f"performance.attention {requested} cannot train here: {reason}; "
            "use auto (falls back to sdpa) or sdpa"
        )
    return AttentionPath(requested, requested in VARLEN)


def apply_attention(model: Any, path: AttentionPath, strict: bool) -> AttentionPath:
    """Switch the (base) transformers model to ``path``'s attention implementation and return
    the path in effect. A model that cannot take it (an LSTM/GRU, an architecture without that
    backend) is an error when ``strict`` (the user named the path), else it keeps its own
    attention, unflattened."""
    target = model.get_base_model() if hasattr(model, "get_base_model") else model
    current = getattr(getattr(target, "config", None), "_attn_implementation", None)
    if current == path.implementation:
        return path
    setter = getattr(target, "set_attn_implementation", None)
    try:
        if setter is None:
            raise ValueError("it is not a transformers model with attention backends")
        setter(path.implementation)
    except (ValueError, ImportError) as exc:
        if strict:
            raise invalid_input(
                f"performance.attention {path.implementation}: {type(target).__name__} cannot "
                f"use it ({exc}); use auto or sdpa"
            ) from exc
        log.info("attention: %s keeps %s (%s)", type(target).__name__, current, exc)
        return AttentionPath(str(current or "eager"))
    log.info("attention: %s%s", path.implementation, " (varlen, flattened)" if path.varlen else "")
    return path
