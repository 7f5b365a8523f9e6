"""Tiny models and datasets for tests: built from a config, tokenizer trained locally."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from kubetune_workloads.datasetio import DatasetInfo
from kubetune_workloads.modelio import ModelInfo, save_model
from kubetune_workloads.tokenizer_train import train_tokenizer

CORPUS = [
    "The cat sat on the mat and looked at the garden.",
    "Rain fell over the quiet town while the baker opened his shop.",
    "Nimbus Drive syncs your files across every device you own.",
    "To reset your password open Settings then Security and choose Reset password.",
    "Shared links can expire after seven days if you set an expiry date.",
    "The river runs past the old mill and into the sea.",
    "Your storage quota is shown under Settings and Storage.",
    "Two factor authentication protects your account with a code from your phone.",
] * 4


def tiny_tokenizer(texts: Sequence[str] = CORPUS, vocab_size: int = 300) -> Any:
    return train_tokenizer(texts, "bpe", vocab_size=vocab_size, min_frequency=1)


def tiny_llama(tokenizer: Any, **shape: Any) -> Any:
    """A randomly initialised Llama sized for tests, matching ``tokenizer``'s vocabulary and
    special tokens; ``shape``: :func:`random_llama`'s sizes and seed."""
    return random_llama(
        len(tokenizer),
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
        **shape,
    )


def random_llama(
    vocab_size: int,
    *,
    hidden: int = 32,
    layers: int = 2,
    heads: int = 4,
    kv_heads: int | None = None,
    intermediate: int | None = None,
    context: int = 128,
    seed: int = 0,
    **config_fields: Any,
) -> Any:
    """A Llama of ``vocab_size`` tokens, initialised from ``seed``; no tokenizer needed."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=hidden,
        intermediate_size=intermediate or hidden * 2,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads or heads,
        max_position_embeddings=context,
        **config_fields,
    )
    return LlamaForCausalLM(config)


def save_tiny_llama(path: Path, **kwargs: Any) -> Path:
    """Write a tiny random Llama model artifact (HF format + kubetune-model.json) to ``path``."""
    tok = tiny_tokenizer()
    model = tiny_llama(tok, **kwargs)
    save_model(model, tok, path, ModelInfo(format="full", family="llama"))
    return path


def write_dataset(
    path: Path, schema: str, train: list[dict[str, Any]], validation: list[dict[str, Any]]
) -> Path:
    """Write a dataset artifact in the prepared format (see kubetune_workloads.datasetio)."""
    path.mkdir(parents=True, exist_ok=True)
    for split, rows in (("train", train), ("validation", validation)):
        with (path / f"{split}.jsonl").open("w", encoding="utf-8") as handle:
            for row in rows:
                handle.write(json.dumps(row) + "\n")
    info = DatasetInfo(schema_=schema, records={"train": len(train), "validation": len(validation)})  # type: ignore[arg-type]
    (path / "dataset.json").write_text(info.to_json())
    return path
