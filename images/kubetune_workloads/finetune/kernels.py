"""Fused kernels and compilation: Liger Kernel (extra ``gpu``) and ``torch.compile``.

``spec.performance.kernels``:

- ``auto``: Liger on a CUDA device when ``liger_kernel`` imports and supports the model family,
  else none (no error);
- ``liger``: required; a CPU, a missing package or an unsupported family is ``InvalidInput``;
- ``none``: the model's own modules.

Liger is applied through its public per-family API (``apply_liger_kernel_to_llama`` ...,
``model=`` the loaded instance): fused linear + cross-entropy (the logits of a training step are
never materialized), RMSNorm, SwiGLU and RoPE, numerically the same model.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import logging
from collections.abc import Callable
from typing import Any

import torch

from kubetune_workloads.errors import invalid_input

log = logging.getLogger(__name__)

LIGER_OPTIONS = {
    "fused_linear_cross_entropy": True,
    "cross_entropy": False,
    "rms_norm": True,
    "swiglu": True,
    "rope": True,
}


def _base(model: Any) -> Any:
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def _liger_patch(model_type: str) -> Callable[..., None] | None:
    """Liger's public ``apply_liger_kernel_to_<family>`` for this model type, if any."""
    module = importlib.import_module("liger_kernel.transformers")
    found = getattr(module, f"apply_liger_kernel_to_{model_type}", None)
    return found if callable(found) else None


def resolve_kernels(requested: str, device: torch.device, model: Any) -> str:
    """``liger`` or ``none`` for this device and model; ``liger`` that cannot run is an error."""
    if requested == "none":
        return "none"
    model_type = str(getattr(getattr(_base(model), "config", None), "model_type", ""))
    installed = importlib.util.find_spec("liger_kernel") is not None
    if requested == "auto":
        usable = device.type == "cuda" and installed and _liger_patch(model_type) is not None
        return "liger" if usable else "none"
    if device.type != "cuda":
        raise invalid_input(
            "performance.kernels liger needs a CUDA device (Liger's kernels are Triton GPU "
            "kernels); use auto or none on CPU"
        )
    if not installed:
        raise invalid_input(
            "performance.kernels liger needs the liger-kernel package: install kubetune[gpu] "
            "(pip install 'liger-kernel>=0.6') in the training image, or use auto"
        )
    if _liger_patch(model_type) is None:
        raise invalid_input(
            f"performance.kernels liger: Liger Kernel has no patch for model type "
            f"{model_type or type(_base(model)).__name__!r}; use auto or none"
        )
    return "liger"


def apply_kernels(model: Any, kernels: str) -> list[str]:
    """Patch the loaded model with Liger's kernels; returns the ones applied."""
    if kernels != "liger":
        return []
    base = _base(model)
    patch = _liger_patch(str(base.config.model_type))
    assert patch is not None  # resolve_kernels checked it
    accepted = inspect.signature(patch).parameters
    options = {name: on for name, on in LIGER_OPTIONS.items() if name in accepted}
    patch(model=base, **options)
    applied = [name for name, on in options.items() if on]
    log.info("liger kernels: %s", ", ".join(applied))
    return applied


def maybe_compile(model: Any, enabled: bool, device: torch.device) -> bool:
    """``torch.compile`` the transformer in place (the module object, and so the optimizer's
    parameters, checkpoints and adapters, stay the same). Returns whether it did."""
    if not enabled:
        return False
    if device.type == "cpu":
        log.warning("performance.compile on CPU: compilation rarely pays there")
    base = _base(model)
    inner = getattr(base, getattr(base, "base_model_prefix", ""), None)
    target = inner if isinstance(inner, torch.nn.Module) else base
    target.compile(dynamic=None)
    log.info("torch.compile: %s", type(target).__name__)
    return True
