"""What to train: load a base or an earlier output, or build a model from scratch; apply LoRA.

Sources (exactly one, checked by the API):

- ``base``: a pretrained model at ``step.model.uri``, safetensors only unless ``allowPickle``.
- ``from``: an earlier FinetuneJob/Compression output. A full model is treated as a base. An
  adapter is **continued**: its base is loaded (quantized again for QLoRA) and the same adapter
  keeps training, so the result is again an adapter on the original base (its earlier LoRA
  settings apply). With ``method: full`` the adapter is merged first and the whole model trains.
- ``architecture``: a Llama/GPT-2/Qwen2 transformer or an LSTM/GRU built from a config.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from kubetune.api.finetune import FinetuneJobSpec
from kubetune.api.steps import FinetuneStepSpec

from kubetune_workloads import modelio, storage
from kubetune_workloads.datasetio import PreparedDataset
from kubetune_workloads.errors import invalid_input
from kubetune_workloads.finetune.architectures import build_config, context_length
from kubetune_workloads.finetune.runtime import TORCH_DTYPES, Runtime
from kubetune_workloads.finetune.tokenizer_setup import resolve_tokenizer

log = logging.getLogger(__name__)


@dataclass
class ModelBundle:
    """The trainable model with everything the outputs need to describe it."""

    model: Any
    tokenizer: Any
    format: Literal["full", "adapter"]
    base_uri: str | None
    family: str | None
    source: Literal["base", "from", "architecture"]
    quantization: dict[str, Any] | None = None

    @property
    def trainable_params(self) -> int:
        return sum(p.numel() for p in self.model.parameters() if p.requires_grad)

    @property
    def total_params(self) -> int:
        return sum(p.numel() for p in self.model.parameters())


def prepare_model(step: FinetuneStepSpec, dataset: PreparedDataset, rt: Runtime) -> ModelBundle:
    """Build or load the model and tokenizer, then make the right parameters trainable."""
    spec = step.spec
    if spec.model.architecture is not None:
        bundle = _from_scratch(spec, dataset, rt)
    else:
        bundle = _from_artifact(step, dataset, rt)
    if spec.hyperparameters.gradient_checkpointing:
        _enable_gradient_checkpointing(bundle.model)
    return bundle


def check_context(config: Any, max_seq_length: int) -> None:
    """Refuse sequences longer than the model's context window."""
    limit = context_length(config)
    if limit is not None and max_seq_length > limit:
        raise invalid_input(
            f"hyperparameters.maxSeqLength {max_seq_length} is larger than the model's context "
            f"length {limit}; lower maxSeqLength to at most {limit}"
        )


def _from_scratch(spec: FinetuneJobSpec, dataset: PreparedDataset, rt: Runtime) -> ModelBundle:
    from transformers import AutoModelForCausalLM

    arch = spec.model.architecture
    assert arch is not None
    modelio.register_custom_architectures()
    tokenizer = resolve_tokenizer(spec.model.tokenizer, dataset, family=arch.family)
    config = build_config(arch, tokenizer)
    check_context(config, spec.hyperparameters.max_seq_length)
    torch.manual_seed(spec.hyperparameters.seed)
    model = AutoModelForCausalLM.from_config(config).to(rt.device)
    return ModelBundle(
        model=model,
        tokenizer=tokenizer,
        format="full",
        base_uri=None,
        family=config.model_type,
        source="architecture",
    )


def _from_artifact(step: FinetuneStepSpec, dataset: PreparedDataset, rt: Runtime) -> ModelBundle:
    spec = step.spec
    source: Literal["base", "from"] = "base" if spec.model.base is not None else "from"
    adapter_path, base_uri, base_path = _locate_weights(step, source)
    config = _read_config(base_path, base_uri, spec)
    already_quantized = getattr(config, "quantization_config", None) is not None
    if spec.method == "full" and already_quantized:
        raise invalid_input(
            f"{base_uri} holds quantized weights, which full fine-tuning cannot train; "
            "use method lora, or start from the full-precision model"
        )
    quantization = _bnb_kwargs(spec) if spec.method != "full" else None
    model = _load_weights(base_path, spec, quantization, _load_dtype(spec, rt), rt)
    tokenizer = _tokenizer_for(spec, dataset, config, model, (adapter_path, base_path))
    if spec.method == "full":
        if adapter_path is not None:
            from peft import PeftModel

            model = PeftModel.from_pretrained(model, str(adapter_path)).merge_and_unload()
        return ModelBundle(model, tokenizer, "full", None, config.model_type, source)
    if quantization or already_quantized:
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(
            model,
            use_gradient_checkpointing=spec.hyperparameters.gradient_checkpointing,
            gradient_checkpointing_kwargs={"use_reentrant": False},
        )
    model = _attach_adapter(model, spec, adapter_path)
    return ModelBundle(
        model, tokenizer, "adapter", base_uri, config.model_type, source, quantization
    )


def _locate_weights(step: FinetuneStepSpec, source: str) -> tuple[Path | None, str, Path]:
    """The adapter to continue, when the model is one, and the base weights it needs:
    ``(adapter path, base URI, base path)``; the base's weight files are checked."""
    if step.model is None:
        raise invalid_input(f"model.{source} is set but the step spec has no resolved model URI")
    path = storage.fetch(step.model.uri)
    info = modelio.read_info(path)
    adapter_path: Path | None = None
    base_uri = step.model.uri
    if info.format == "adapter":
        if not info.base_uri:
            raise invalid_input(f"adapter at {step.model.uri} does not say where its base is")
        adapter_path, base_uri = path, info.base_uri
    base_path = storage.fetch(base_uri)
    modelio.check_weights(base_path, step.spec.model.allow_pickle)
    return adapter_path, base_uri, base_path


def _read_config(base_path: Path, base_uri: str, spec: FinetuneJobSpec) -> Any:
    """The base's ``config.json`` (kubetune's own architectures registered first)."""
    from transformers import AutoConfig

    modelio.register_custom_architectures()
    try:
        config = AutoConfig.from_pretrained(
            str(base_path), trust_remote_code=spec.model.trust_remote_code
        )
    except (OSError, ValueError) as exc:
        raise invalid_input(f"cannot read the model config at {base_uri}: {exc}") from exc
    check_context(config, spec.hyperparameters.max_seq_length)
    return config


def _tokenizer_for(
    spec: FinetuneJobSpec,
    dataset: PreparedDataset,
    config: Any,
    model: Any,
    dirs: tuple[Path | None, Path],
) -> Any:
    """The tokenizer to train with: the spec's choice, else the adapter's (when it has one) or
    the base's (``dirs``); refused when it has more tokens than the model's vocabulary."""
    adapter_path, base_path = dirs
    tokenizer_dir = (
        adapter_path if adapter_path and modelio.has_tokenizer(adapter_path) else base_path
    )
    model_tokenizer = (
        modelio.load_tokenizer(tokenizer_dir, spec.model.trust_remote_code)
        if modelio.has_tokenizer(tokenizer_dir)
        else None
    )
    tokenizer = resolve_tokenizer(
        spec.model.tokenizer, dataset, family=config.model_type, model_tokenizer=model_tokenizer
    )
    if len(tokenizer) > model.get_input_embeddings().num_embeddings:
        raise invalid_input(
            f"the tokenizer has {len(tokenizer)} tokens but the model's vocabulary holds "
            f"{model.get_input_embeddings().num_embeddings}"
        )
    return tokenizer


def _load_weights(
    path: Path, spec: FinetuneJobSpec, quantization: dict[str, Any] | None, dtype: str, rt: Runtime
) -> Any:
    """The base weights (safetensors unless pickle is allowed), quantized when asked."""
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    kwargs: dict[str, Any] = {
        "trust_remote_code": spec.model.trust_remote_code,
        "use_safetensors": not spec.model.allow_pickle,
        "dtype": TORCH_DTYPES[dtype],
        "device_map": {"": str(rt.device)},
    }
    if quantization:
        kwargs["quantization_config"] = BitsAndBytesConfig(**quantization)
    try:
        model = AutoModelForCausalLM.from_pretrained(str(path), **kwargs)
    except (OSError, ValueError) as exc:
        raise invalid_input(f"cannot load model weights from {path}: {exc}") from exc
    model.train()
    return model


def _attach_adapter(model: Any, spec: FinetuneJobSpec, adapter_path: Path | None) -> Any:
    from peft import LoraConfig, PeftModel, get_peft_model

    if adapter_path is not None:
        log.info("continuing the adapter at %s", adapter_path)
        return PeftModel.from_pretrained(model, str(adapter_path), is_trainable=True)
    lora = spec.lora
    assert lora is not None  # the API requires lora settings for lora/qlora
    targets = check_target_modules(model, lora.target_modules)
    config = LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,  # type: ignore[arg-type]  # peft says int; it only scales by it
        lora_dropout=lora.dropout,
        target_modules=targets,
        use_dora=lora.use_dora,
        use_rslora=lora.use_rslora,
        bias="none",
        task_type="CAUSAL_LM",
    )
    try:
        return get_peft_model(model, config)
    except ValueError as exc:
        raise invalid_input(f"cannot apply LoRA to this model: {exc}") from exc


def adaptable_module_names(model: Any) -> dict[str, str]:
    """Full name -> short name of every module LoRA can adapt (linear, conv1d, embedding)."""
    from torch import nn
    from transformers.pytorch_utils import Conv1D

    kinds = (nn.Linear, nn.Embedding, Conv1D)
    return {
        name: name.rsplit(".", 1)[-1]
        for name, module in model.named_modules()
        if name and isinstance(module, kinds)
    }


def check_target_modules(model: Any, targets: list[str]) -> str | list[str]:
    """``all-linear`` as peft expects it, or the named modules after checking they exist."""
    if "all-linear" in targets:
        if len(targets) > 1:
            raise invalid_input("lora.targetModules: all-linear cannot be combined with names")
        return "all-linear"
    names = adaptable_module_names(model)
    unknown = [t for t in targets if not any(full == t or full.endswith("." + t) for full in names)]
    if unknown:
        available = ", ".join(sorted(set(names.values())))
        raise invalid_input(
            f"lora.targetModules {unknown} match no module of this model; "
            f"available: {available} (or all-linear)"
        )
    return targets


def _bnb_kwargs(spec: FinetuneJobSpec) -> dict[str, Any] | None:
    """bitsandbytes settings for the frozen base (QLoRA, or LoRA on an 8-bit base)."""
    q = spec.quantization
    if q is None:
        return None
    if q.bits == 8:
        return {"load_in_8bit": True}
    return {
        "load_in_4bit": True,
        "bnb_4bit_quant_type": q.quant_type,
        "bnb_4bit_use_double_quant": q.double_quant,
        "bnb_4bit_compute_dtype": TORCH_DTYPES[q.compute_dtype],
    }


def _load_dtype(spec: FinetuneJobSpec, rt: Runtime) -> str:
    """Full fine-tuning keeps fp32 master weights; a frozen base sits in the compute dtype."""
    if spec.method == "full" or rt.precision == "fp32":
        return "fp32"
    if spec.quantization is not None:
        return spec.quantization.compute_dtype
    return rt.precision


def _enable_gradient_checkpointing(model: Any) -> None:
    target = model.get_base_model() if hasattr(model, "get_base_model") else model
    if not getattr(target, "supports_gradient_checkpointing", False):
        log.warning("%s does not support gradient checkpointing; ignored", type(target).__name__)
        return
    target.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if hasattr(model, "enable_input_require_grads"):
        model.enable_input_require_grads()
