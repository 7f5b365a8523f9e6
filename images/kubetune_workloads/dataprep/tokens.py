"""Token counting with the target model's tokenizer (or one trained here), bounds, histogram.

A record's tokens are those the fine-tuning step feeds the model: the text; instruction, input
and output joined by newlines; or, for chat, the conversation rendered with the tokenizer's
chat template. Records over ``maxTokens`` are dropped, or truncated by cutting the last field
(``text``, ``output`` or the last message).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from kubetune.api.dataset import TokenizerSpec

from kubetune_workloads import storage
from kubetune_workloads.dataprep.records import Record

HISTOGRAM_EDGES = (16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192)


def load(spec: TokenizerSpec, tokenizer_uri: str | None) -> Any | None:
    """The tokenizer named by the step (resolved model) or the spec's model URI, else None."""
    from kubetune_workloads.modelio import load_tokenizer

    uri = tokenizer_uri or (spec.model.uri if spec.model else None)
    if not uri:
        return None
    path: Path = storage.fetch(uri)
    return load_tokenizer(path)


def train(spec: TokenizerSpec, texts: Iterable[str]) -> Any:
    from kubetune_workloads.tokenizer_train import train_tokenizer

    assert spec.train is not None
    return train_tokenizer(texts, spec.train.type, vocab_size=spec.train.vocab_size)


def render(record: Record, tokenizer: Any) -> str:
    """The text a model sees for ``record``."""
    fields = record.fields
    if "messages" in fields:
        if getattr(tokenizer, "chat_template", None):
            return str(tokenizer.apply_chat_template(fields["messages"], tokenize=False))
        return "\n".join(m["content"] for m in fields["messages"])
    if "instruction" in fields:
        parts = (fields["instruction"], fields.get("input", ""), fields["output"])
        return "\n".join(p for p in parts if p)
    return str(fields["text"])


def count(records: Sequence[Record], tokenizer: Any) -> list[int]:
    """Tokens per record (no special tokens added), one batched call."""
    if not records:
        return []
    encoded = tokenizer([render(r, tokenizer) for r in records], add_special_tokens=False)
    return [len(ids) for ids in encoded["input_ids"]]


def truncate(record: Record, tokenizer: Any, over: int) -> bool:
    """Cut ``over`` tokens from the end of the record's last field; False when impossible."""
    fields = record.fields
    if "messages" in fields:
        holder, key = fields["messages"][-1], "content"
    elif "instruction" in fields:
        holder, key = fields, "output"
    else:
        holder, key = fields, "text"
    ids = tokenizer(holder[key], add_special_tokens=False)["input_ids"]
    keep = len(ids) - over
    if keep <= 0:
        return False
    holder[key] = tokenizer.decode(ids[:keep], skip_special_tokens=True).rstrip()
    return bool(holder[key])


def histogram(lengths: np.ndarray) -> dict[str, Any]:
    """Token count summary: total, min/mean/percentiles/max and power-of-two buckets."""
    if lengths.size == 0:
        return {"total": 0, "records": 0}
    buckets: dict[str, int] = {}
    lower = 0
    for edge in HISTOGRAM_EDGES:
        buckets[f"{lower + 1}-{edge}" if lower else f"<={edge}"] = int(
            np.count_nonzero((lengths > lower) & (lengths <= edge))
        )
        lower = edge
    buckets[f">{lower}"] = int(np.count_nonzero(lengths > lower))
    return {
        "total": int(lengths.sum()),
        "records": int(lengths.size),
        "min": int(lengths.min()),
        "mean": round(float(lengths.mean()), 2),
        "p50": int(np.percentile(lengths, 50)),
        "p90": int(np.percentile(lengths, 90)),
        "p99": int(np.percentile(lengths, 99)),
        "max": int(lengths.max()),
        "buckets": {k: v for k, v in buckets.items() if v},
    }
