"""Models designed from scratch: Llama, GPT-2 or Qwen2 configs, or a character-level RNN."""

from __future__ import annotations

import math
from typing import Any

from kubetune.api.finetune import Architecture

from kubetune_workloads.errors import invalid_input


def _round_up(value: float, multiple: int = 8) -> int:
    return int(math.ceil(value / multiple) * multiple)


def build_config(arch: Architecture, tokenizer: Any) -> Any:
    """A transformers config for ``arch``, sized to the tokenizer's vocabulary."""
    vocab = arch.vocab_size or len(tokenizer)
    if vocab < len(tokenizer):
        raise invalid_input(
            f"architecture.vocabSize {vocab} is smaller than the tokenizer's "
            f"{len(tokenizer)} tokens"
        )
    special = {
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }
    if arch.family in ("lstm", "gru"):
        return _rnn_config(arch, vocab, special)
    if arch.family == "gpt2":
        return _gpt2_config(arch, vocab, special)
    return _decoder_config(arch, vocab, special)


def _rnn_config(arch: Architecture, vocab: int, special: dict[str, Any]) -> Any:
    from kubetune_workloads.rnn import KubetuneRNNConfig

    cell = arch.family
    if cell not in ("lstm", "gru"):
        raise ValueError(f"architecture family {cell!r} is not a recurrent cell")
    return KubetuneRNNConfig(
        vocab_size=vocab,
        cell=cell,
        num_layers=arch.layers,
        hidden_size=arch.hidden_size,
        embedding_size=arch.embedding_size,
        dropout=arch.dropout,
        context_length=arch.context_length,
        **special,
    )


def _gpt2_config(arch: Architecture, vocab: int, special: dict[str, Any]) -> Any:
    from transformers import GPT2Config

    heads = arch.heads or 1
    if (arch.kv_heads or heads) != heads:
        raise invalid_input("gpt2 has no grouped-query attention: leave kvHeads unset")
    return GPT2Config(
        vocab_size=vocab,
        n_embd=arch.hidden_size,
        n_layer=arch.layers,
        n_head=heads,
        n_positions=arch.context_length,
        n_inner=arch.intermediate_size,
        resid_pdrop=arch.dropout,
        embd_pdrop=arch.dropout,
        attn_pdrop=arch.dropout,
        **special,
    )


def _decoder_config(arch: Architecture, vocab: int, special: dict[str, Any]) -> Any:
    """Llama, or Qwen2 (the same shape of config)."""
    heads = arch.heads or 1
    common = {
        "vocab_size": vocab,
        "hidden_size": arch.hidden_size,
        "intermediate_size": arch.intermediate_size or _round_up(arch.hidden_size * 8 / 3),
        "num_hidden_layers": arch.layers,
        "num_attention_heads": heads,
        "num_key_value_heads": arch.kv_heads or heads,
        "max_position_embeddings": arch.context_length,
        "attention_dropout": arch.dropout,
        **special,
    }
    if arch.family == "qwen2":
        from transformers import Qwen2Config

        return Qwen2Config(**common)
    from transformers import LlamaConfig

    return LlamaConfig(**common)


def context_length(config: Any) -> int | None:
    """The longest sequence a model config accepts, when it declares one."""
    for attr in ("max_position_embeddings", "n_positions", "context_length", "seq_length"):
        value = getattr(config, attr, None)
        if isinstance(value, int) and value > 0:
            return value
    return None
