"""One set of measurements of a loaded model: the "before" or "after" column of the report."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kubetune_workloads.compress import measure
from kubetune_workloads.compress.latency import generation_speed
from kubetune_workloads.compress.perplexity import EvalBatches, perplexity


@dataclass
class Snapshot:
    """Everything the report compares, measured on one loaded model."""

    parameters: int
    bytes_on_disk: int
    memory_bytes: int
    sparsity: float
    perplexity: float | None
    latency_seconds: float
    tokens_per_second: float
    dtype: str
    quantization: str | None

    def to_json(self) -> dict[str, Any]:
        return {
            "parameters": self.parameters,
            "bytesOnDisk": self.bytes_on_disk,
            "memoryBytes": self.memory_bytes,
            "sparsity": self.sparsity,
            "perplexity": self.perplexity,
            "latencySeconds": self.latency_seconds,
            "tokensPerSecond": self.tokens_per_second,
            "dtype": self.dtype,
            "quantization": self.quantization,
        }


def take_snapshot(
    model: Any,
    tokenizer: Any,
    *,
    bytes_on_disk: int,
    batches: EvalBatches | None,
    prompts: list[str],
    max_new_tokens: int,
) -> Snapshot:
    """Measure size, sparsity, perplexity (when batches are given) and generation speed."""
    # sizes first: bitsandbytes repacks 4-bit weights for its CPU kernel on the first forward
    parameters = measure.count_parameters(model)
    memory_bytes = measure.memory_footprint(model)
    zeros = measure.sparsity(model)
    ppl = perplexity(model, batches) if batches is not None else None
    speed = generation_speed(model, tokenizer, prompts, max_new_tokens)
    return Snapshot(
        parameters=parameters,
        bytes_on_disk=bytes_on_disk,
        memory_bytes=memory_bytes,
        sparsity=zeros,
        perplexity=ppl,
        latency_seconds=speed.latency_seconds,
        tokens_per_second=speed.tokens_per_second,
        dtype=str(model.get_input_embeddings().weight.dtype).removeprefix("torch."),
        quantization=_quantization_label(model),
    )


def _quantization_label(model: Any) -> str | None:
    config = getattr(getattr(model, "config", None), "quantization_config", None)
    if config is None:
        return None
    data = config if isinstance(config, dict) else config.to_dict()
    if data.get("load_in_4bit"):
        return f"bnb-4bit-{data.get('bnb_4bit_quant_type', 'nf4')}"
    if data.get("load_in_8bit"):
        return "bnb-int8"
    return str(data.get("quant_method", "quantized"))
