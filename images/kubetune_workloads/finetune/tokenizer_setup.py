"""Which tokenizer a run uses: the model's, the Dataset artifact's, or one trained here."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

from kubetune.api.finetune import TokenizerSource

from kubetune_workloads.datasetio import PreparedDataset
from kubetune_workloads.errors import invalid_input
from kubetune_workloads.modelio import load_tokenizer
from kubetune_workloads.tokenizer_train import ensure_special_tokens, train_tokenizer

log = logging.getLogger(__name__)
RNN_FAMILIES = ("lstm", "gru")


def record_texts(dataset: PreparedDataset, split: str = "train") -> Iterator[str]:
    """Every piece of text in a split, whatever its schema (for tokenizer training)."""
    for record in dataset.iter_records(split):
        if isinstance(record.get("text"), str):
            yield record["text"]
        for key in ("instruction", "input", "output"):
            if isinstance(record.get(key), str) and record[key]:
                yield record[key]
        for message in record.get("messages") or []:
            if isinstance(message, dict) and isinstance(message.get("content"), str):
                yield message["content"]


def resolve_tokenizer(
    source: TokenizerSource | None,
    dataset: PreparedDataset,
    *,
    family: str | None,
    model_tokenizer: Any = None,
) -> Any:
    """The model's tokenizer when it has one; else the dataset's; else train one.

    A model designed from scratch has none: it takes the dataset's (``fromDataset``, default)
    or trains one on the training split (``train: bpe|char``; character-level for RNNs).
    """
    source = source or TokenizerSource()
    if model_tokenizer is not None and source.train is None:
        return ensure_special_tokens(model_tokenizer)
    shipped = dataset.tokenizer_path
    if source.train is None and source.from_dataset and shipped is not None and shipped.is_dir():
        log.info("using the dataset's tokenizer at %s", shipped)
        return ensure_special_tokens(load_tokenizer(shipped))
    if model_tokenizer is not None:
        return ensure_special_tokens(model_tokenizer)
    kind = source.train or ("char" if family in RNN_FAMILIES else "bpe")
    texts = list(record_texts(dataset))
    if not texts:
        raise invalid_input("cannot train a tokenizer: the dataset's train split holds no text")
    log.info("training a %s tokenizer (vocab %d) on %d texts", kind, source.vocab_size, len(texts))
    return ensure_special_tokens(train_tokenizer(texts, kind, vocab_size=source.vocab_size))
