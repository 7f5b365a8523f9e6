"""The ``quantize`` step: bitsandbytes LLM.int8 or 4-bit (nf4/fp4), as a loadable checkpoint.

bitsandbytes quantizes while transformers loads weights, so the current model is written to a
scratch directory in full precision and loaded back through :func:`modelio.load_model` with a
``BitsAndBytesConfig``. ``save_pretrained`` of the result then writes packed weights and the
``quantization_config`` that plain ``transformers`` needs to load them again.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from kubetune.api.compression import QuantizeStep

from kubetune_workloads import modelio, storage
from kubetune_workloads.compress.merge import TORCH_DTYPES
from kubetune_workloads.compress.state import WorkingModel
from kubetune_workloads.errors import WorkloadError


def bnb_kwargs(step: QuantizeStep) -> dict[str, Any]:
    """``BitsAndBytesConfig`` keyword arguments (JSON-able) for a quantize step."""
    if step.bits == 8:
        return {"load_in_8bit": True, "llm_int8_skip_modules": list(step.skip_modules)}
    return {
        "load_in_4bit": True,
        "bnb_4bit_quant_type": step.quant_type,
        "bnb_4bit_use_double_quant": step.double_quant,
        "bnb_4bit_compute_dtype": TORCH_DTYPES[step.compute_dtype],
        "llm_int8_skip_modules": list(step.skip_modules),
    }


def describe(step: QuantizeStep) -> str:
    if step.bits == 8:
        return "bitsandbytes LLM.int8 (8-bit)"
    dq = ", double quant" if step.double_quant else ""
    return f"bitsandbytes 4-bit {step.quant_type}{dq}, compute {step.compute_dtype}"


def check(has_adapter: bool, quantized: bool) -> None:
    """Refuse an already-quantized model and an unmerged adapter."""
    if quantized:
        raise WorkloadError(
            "AlreadyQuantized",
            "the model is already quantized; quantizing it again would compound rounding "
            "errors. Compress the full-precision model instead.",
        )
    if has_adapter:
        raise WorkloadError(
            "AdapterNotMerged",
            "the input is a LoRA adapter; add a mergeAdapter step before quantize so the "
            "adapter is merged in full precision.",
        )


def quantize(working: WorkingModel, step: QuantizeStep) -> WorkingModel:
    """Quantize the working model; refuses quantized models and unmerged adapters."""
    check(working.has_adapter, working.is_quantized)
    _check_skip_modules(working, step)
    kwargs = bnb_kwargs(step)
    with tempfile.TemporaryDirectory(prefix="kubetune-quantize-", dir=storage.cache_root()) as tmp:
        info = modelio.ModelInfo(format="full", family=working.model.config.model_type)
        modelio.save_model(working.model, working.tokenizer, Path(tmp), info)
        try:
            loaded = modelio.load_model(f"file://{tmp}", quantization=kwargs, device=working.device)
        except WorkloadError:
            raise
        except Exception as exc:
            raise WorkloadError(
                "QuantizationFailed", f"bitsandbytes could not quantize the model: {exc}"
            ) from exc
    quantized = [
        name
        for name, module in loaded.model.named_modules()
        if type(module).__name__ in ("Linear8bitLt", "Linear4bit")
    ]
    if not quantized:
        raise WorkloadError(
            "NothingToQuantize",
            f"bitsandbytes found nothing to quantize in this "
            f"{working.model.config.model_type} model: it quantizes linear layers only, and "
            f"this model has none outside skipModules ({', '.join(step.skip_modules) or 'none'})."
            " Remove the quantize step (nothing would shrink), or adjust skipModules.",
        )
    working.model = loaded.model
    working.quantization = dict(loaded.model.config.quantization_config.to_dict())
    working.notes.append(
        f"quantize: {describe(step)}; modules kept in full precision: "
        f"{', '.join(step.skip_modules) or 'none'}. Loading it needs bitsandbytes."
    )
    return working


def _check_skip_modules(working: WorkingModel, step: QuantizeStep) -> None:
    names = {name.rsplit(".", 1)[-1] for name, _ in working.model.named_modules()}
    names |= {name for name, _ in working.model.named_modules()}
    unknown = [m for m in step.skip_modules if m not in names]
    if unknown:
        working.notes.append(
            f"quantize: skipModules {unknown} match no module of this model (ignored)."
        )


def avoid_cpu_kernel_limits(model: Any) -> list[str]:
    """Route 4-bit layers that bitsandbytes' AVX512-BF16 CPU kernel cannot run to its generic path.

    That kernel needs ``out_features % 32 == 0`` and ``in_features`` a multiple of the
    quantization block size (e.g. an MLP of 344 channels fails). GPUs are unaffected. Returns
    the names of the layers changed, for the report.
    """
    changed = []
    for name, module in model.named_modules():
        if not getattr(module, "support_avx512bf16_for_cpu", False):
            continue
        state = getattr(module.weight, "quant_state", None)
        block = getattr(state, "blocksize", 64) or 64
        if module.out_features % 32 or module.in_features % block:
            module.support_avx512bf16_for_cpu = False
            changed.append(name)
    return changed


def cpu_kernel_note(changed: list[str]) -> str:
    shown = ", ".join(changed[:3]) + (" ..." if len(changed) > 3 else "")
    return (
        f"quantize: {len(changed)} 4-bit layers ({shown}) have shapes that bitsandbytes' "
        "AVX512-BF16 CPU kernel rejects (out_features must divide by 32, in_features by the "
        "block size); they were measured with its generic "
        "CPU path. On such CPUs set `support_avx512bf16_for_cpu = False` on those modules after "
        "loading; GPUs are unaffected."
    )
