"""Model artifacts: one loader and one writer shared by finetune, compress and evaluate.

A kubetune model artifact is an HF-format directory (``config.json`` + ``*.safetensors`` +
tokenizer files), or a peft adapter directory (``adapter_config.json`` +
``adapter_model.safetensors`` + tokenizer). Beside them, ``kubetune-model.json``
(:class:`ModelInfo`) says which it is and, for adapters, where the base lives as a URI, so that
an adapter trained in one pod loads in another. Weights load from safetensors only unless pickle
is explicitly allowed; ``trust_remote_code`` is off unless asked for.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from kubetune_workloads import storage
from kubetune_workloads.errors import WorkloadError, invalid_input

MODEL_INFO_FILE = "kubetune-model.json"
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
JSON_FILES = (
    "config.json",
    "adapter_config.json",
    MODEL_INFO_FILE,
    "generation_config.json",
    "tokenizer_config.json",
    "tokenizer.json",
    "special_tokens_map.json",
)
SAFETENSORS_HEADER_LIMIT = 100 * 1024 * 1024


class ModelInfo(BaseModel):
    """What a model artifact holds."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)

    format: Literal["full", "adapter"] = "full"
    base_uri: str | None = Field(None, description="Adapters: URI of the base model.")
    family: str | None = Field(None, description="Model type, e.g. llama, kubetune_rnn.")
    quantization: dict[str, Any] | None = Field(
        None, description="bitsandbytes settings when the weights are quantized."
    )
    merged_subdir: str | None = Field(
        None, description="Sub-directory holding a merged full model, when written."
    )
    trust_remote_code: bool = False
    instruction_template: str | None = Field(
        None,
        description="How the model expects instructions: 'alpaca' or a template with "
        "{instruction} and {input} (see kubetune_workloads.prompts); None for base models.",
    )
    objective: str | None = Field(
        None,
        description="The training objective: continued-pretraining models are measured on a "
        "packed stream of records, others one record at a time.",
    )
    max_seq_length: int | None = Field(
        None,
        description="The sequence length the model was trained with: perplexity blocks "
        "(kubetune_workloads.likelihood) use it so every kind measures the same thing.",
    )


@dataclass
class LoadedModel:
    """A model ready for use, with its tokenizer and artifact info."""

    model: Any
    tokenizer: Any
    info: ModelInfo
    path: Path


def check_files(path: Path) -> None:
    """Refuse damaged model files before anything loads them, naming the file and the damage.

    Every JSON file of the artifact must parse; every ``*.safetensors`` file must have a
    well-formed header whose tensors lie inside the file (a truncated or overwritten file
    fails here with ``InvalidInput`` instead of an exception deep inside a loader).
    """
    for name in JSON_FILES:
        file = path / name
        if not file.is_file():
            continue
        try:
            json.loads(file.read_text(encoding="utf-8"))
        except UnicodeDecodeError as exc:
            raise invalid_input(f"{file} is not valid JSON: not UTF-8 text ({exc})") from None
        except ValueError as exc:
            raise invalid_input(
                f"{file} is not valid JSON (truncated or corrupt?): {exc}"
            ) from None
    for file in sorted(path.glob("*.safetensors")):
        problem = _safetensors_problem(file)
        if problem:
            raise invalid_input(f"{file} is not a valid safetensors file: {problem}")


def _safetensors_problem(file: Path) -> str | None:
    size = file.stat().st_size
    with file.open("rb") as handle:
        head = handle.read(8)
        if len(head) < 8:
            return f"{size} bytes, shorter than the 8-byte header length"
        (length,) = struct.unpack("<Q", head)
        if length > min(size - 8, SAFETENSORS_HEADER_LIMIT):
            return f"header length {length} does not fit the file's {size} bytes"
        raw = handle.read(length)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        return f"the header is not JSON ({exc})"
    if not isinstance(header, dict):
        return "the header is not a JSON object"
    end = 0
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        offsets = entry.get("data_offsets") if isinstance(entry, dict) else None
        if not (isinstance(offsets, list) and len(offsets) == 2):
            return f"tensor {name!r} has no data offsets"
        end = max(end, int(offsets[1]))
    if 8 + length + end > size:
        return f"the tensors need {8 + length + end} bytes but the file has {size} (truncated?)"
    return None


def read_info(path: Path) -> ModelInfo:
    """The artifact's ModelInfo; inferred for plain HF directories without one."""
    if path.is_dir():
        check_files(path)
    info_file = path / MODEL_INFO_FILE
    if info_file.is_file():
        return ModelInfo.model_validate_json(info_file.read_text())
    if (path / "adapter_config.json").is_file():
        cfg = json.loads((path / "adapter_config.json").read_text())
        base = cfg.get("base_model_name_or_path")
        return ModelInfo(format="adapter", base_uri=_as_uri(base) if base else None)
    if (path / "config.json").is_file():
        cfg = json.loads((path / "config.json").read_text())
        return ModelInfo(
            format="full",
            family=cfg.get("model_type"),
            quantization=cfg.get("quantization_config"),
        )
    raise invalid_input(f"{path} is not a model: no config.json or adapter_config.json")


def _as_uri(ref: str) -> str:
    return ref if "://" in ref else ("file://" + ref if ref.startswith("/") else "hf://" + ref)


def check_weights(path: Path, allow_pickle: bool) -> None:
    """Refuse pickle-only weights unless allowed (pickle can execute code on load)."""
    safetensors = list(path.glob("*.safetensors"))
    pickles = [p for p in path.iterdir() if p.suffix in PICKLE_SUFFIXES and p.is_file()]
    if not safetensors and pickles and not allow_pickle:
        raise WorkloadError(
            "UnsafeWeights",
            f"{path} holds only pickle weights ({', '.join(p.name for p in pickles[:3])}); "
            "kubetune loads safetensors only. Convert the model, or set model.allowPickle: true "
            "if you trust its source.",
        )


def register_custom_architectures() -> None:
    """Make kubetune's own architectures (the character-level RNN) loadable by Auto classes."""
    try:
        from kubetune_workloads import rnn
    except ImportError:  # pragma: no cover - rnn ships with the package
        return
    rnn.register()


def load_tokenizer(path: Path, trust_remote_code: bool = False) -> Any:
    from transformers import AutoTokenizer

    register_custom_architectures()
    try:
        return AutoTokenizer.from_pretrained(str(path), trust_remote_code=trust_remote_code)
    except Exception as exc:
        raise invalid_input(f"cannot load a tokenizer from {path}: {exc}") from exc


def load_model(
    uri: str,
    *,
    adapter: Literal["apply", "merge"] = "apply",
    quantization: dict[str, Any] | None = None,
    dtype: str | None = None,
    trust_remote_code: bool = False,
    allow_pickle: bool = False,
    device: str | None = None,
) -> LoadedModel:
    """Load a model artifact (full or adapter) and its tokenizer.

    ``quantization`` (bitsandbytes kwargs, e.g. ``{"load_in_4bit": True, ...}``) quantizes a
    full-precision base on load. For adapters the base is fetched from ``info.base_uri``, then
    the adapter is applied (``apply``) or merged into the base (``merge``; refused on a
    quantized base because peft's merge there is lossy).
    """
    register_custom_architectures()
    path = storage.fetch(uri)
    info = read_info(path)
    base_path = path
    if info.format == "adapter":
        if not info.base_uri:
            raise invalid_input(f"adapter at {uri} does not say where its base model is")
        base_path = storage.fetch(info.base_uri)
        check_files(base_path)
    check_weights(base_path, allow_pickle)
    kwargs = _load_kwargs(quantization, dtype, trust_remote_code, allow_pickle, device)
    model = _load_weights(base_path, kwargs)
    if info.format == "adapter":
        model = _with_adapter(model, path, adapter, quantization)
    tokenizer_dir = path if has_tokenizer(path) else base_path
    tokenizer = load_tokenizer(tokenizer_dir, trust_remote_code)
    model.eval()
    return LoadedModel(model=model, tokenizer=tokenizer, info=info, path=path)


def _load_kwargs(
    quantization: dict[str, Any] | None,
    dtype: str | None,
    trust_remote_code: bool,
    allow_pickle: bool,
    device: str | None,
) -> dict[str, Any]:
    """``from_pretrained`` keyword arguments (safetensors unless pickle is allowed)."""
    import torch
    from transformers import BitsAndBytesConfig

    kwargs: dict[str, Any] = {
        "trust_remote_code": trust_remote_code,
        "use_safetensors": not allow_pickle,
    }
    if dtype:
        dtypes = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
        kwargs["dtype"] = dtypes[dtype]
    if quantization:
        kwargs["quantization_config"] = BitsAndBytesConfig(**quantization)
    if device:
        kwargs["device_map"] = {"": device}
    return kwargs


def _load_weights(base_path: Path, kwargs: dict[str, Any]) -> Any:
    """The causal LM at ``base_path``; a file transformers cannot read is invalid input."""
    from transformers import AutoModelForCausalLM

    try:
        return AutoModelForCausalLM.from_pretrained(str(base_path), **kwargs)
    except (OSError, ValueError, RuntimeError, KeyError) as exc:
        raise invalid_input(
            f"cannot load model weights from {base_path}: {type(exc).__name__}: {exc}"
        ) from exc


def _with_adapter(
    model: Any,
    path: Path,
    adapter: Literal["apply", "merge"],
    quantization: dict[str, Any] | None,
) -> Any:
    """The LoRA adapter at ``path`` applied to ``model``, or merged into it (never into a
    quantized base: the merge would be lossy)."""
    from peft import PeftModel

    if adapter == "merge" and (quantization or getattr(model, "is_quantized", False)):
        raise WorkloadError(
            "UnsupportedMerge",
            "refusing to merge a LoRA adapter into a quantized base: the merge is lossy. "
            "Merge into the full-precision base first, then quantize.",
        )
    applied: Any = PeftModel.from_pretrained(model, str(path))
    return applied.merge_and_unload() if adapter == "merge" else applied


def has_tokenizer(path: Path) -> bool:
    """Whether the directory holds a tokenizer's files."""
    return any(
        (path / name).is_file()
        for name in ("tokenizer.json", "tokenizer_config.json", "vocab.json", "tokenizer.model")
    )


def save_model(model: Any, tokenizer: Any, out_dir: Path, info: ModelInfo) -> None:
    """Write weights (safetensors), tokenizer and ModelInfo into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out_dir), safe_serialization=True)
    if tokenizer is not None:
        tokenizer.save_pretrained(str(out_dir))
    (out_dir / MODEL_INFO_FILE).write_text(info.model_dump_json(by_alias=True, indent=2))
