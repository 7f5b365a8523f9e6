"""A character-level recurrent language model (LSTM or GRU) in Hugging Face form.

``KubetuneRNNConfig`` / ``KubetuneRNNForCausalLM`` (model type ``kubetune_rnn``) are a
``PretrainedConfig`` and a ``PreTrainedModel`` with ``GenerationMixin``: they save as
``config.json`` + ``model.safetensors``, load with ``AutoModelForCausalLM`` once
:func:`register` has run (``modelio.register_custom_architectures`` calls it), and ``generate()``
text. Generation re-reads the whole prefix at every step (no recurrent-state cache): simple and
exact, and cheap at the sizes a character-level model is used for.
"""

from __future__ import annotations

import contextlib
from typing import Any, Literal

import torch
from torch import nn
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    GenerationMixin,
    PretrainedConfig,
    PreTrainedModel,
)
from transformers.modeling_outputs import CausalLMOutput

MODEL_TYPE = "kubetune_rnn"


class KubetuneRNNConfig(PretrainedConfig):
    """Size and cell of a recurrent language model."""

    model_type = MODEL_TYPE
    attribute_map = {"num_hidden_layers": "num_layers"}  # noqa: RUF012 - transformers' API

    def __init__(
        self,
        vocab_size: int = 256,
        cell: Literal["lstm", "gru"] = "lstm",
        num_layers: int = 2,
        hidden_size: int = 256,
        embedding_size: int | None = None,
        dropout: float = 0.0,
        context_length: int = 512,
        tie_word_embeddings: bool = False,
        **kwargs: Any,
    ) -> None:
        if cell not in ("lstm", "gru"):
            raise ValueError(f"cell must be lstm or gru, not {cell!r}")
        self.vocab_size = vocab_size
        self.cell = cell
        self.num_layers = num_layers
        self.hidden_size = hidden_size
        self.embedding_size = embedding_size or hidden_size
        self.dropout = dropout
        self.context_length = context_length
        self.max_position_embeddings = context_length
        kwargs.setdefault("use_cache", False)
        # PreTrainedConfig takes extra keywords (``accept_kwargs``); its typed __init__ lists
        # only its own fields, so this one travels in ``kwargs``.
        kwargs["tie_word_embeddings"] = tie_word_embeddings
        super().__init__(**kwargs)


class KubetuneRNNForCausalLM(PreTrainedModel, GenerationMixin):
    """Embedding -> stacked LSTM/GRU -> linear head over the vocabulary."""

    config_class = KubetuneRNNConfig
    base_model_prefix = "rnn"
    main_input_name = "input_ids"
    _no_split_modules: list[str] | set[str] | None = []  # noqa: RUF012 - transformers' API
    embed: nn.Module
    lm_head: nn.Module

    def __init__(self, config: KubetuneRNNConfig) -> None:
        super().__init__(config)
        cell = nn.LSTM if config.cell == "lstm" else nn.GRU
        self.embed = nn.Embedding(config.vocab_size, config.embedding_size)
        self.rnn = cell(
            config.embedding_size,
            config.hidden_size,
            num_layers=config.num_layers,
            dropout=config.dropout if config.num_layers > 1 else 0.0,
            batch_first=True,
        )
        self.drop = nn.Dropout(config.dropout)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=True)
        # post_init is unannotated in transformers; untyped_calls_exclude cannot see it through
        # the subclass.
        self.post_init()  # type: ignore[no-untyped-call]

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, nn.Embedding | nn.Linear):
            nn.init.normal_(module.weight, std=0.02)
            bias = getattr(module, "bias", None)
            if isinstance(bias, torch.Tensor):
                nn.init.zeros_(bias)
        elif isinstance(module, nn.LSTM | nn.GRU):
            for name, param in module.named_parameters():
                if "weight" in name:
                    nn.init.xavier_uniform_(param)
                else:
                    nn.init.zeros_(param)

    def get_input_embeddings(self) -> nn.Module:
        return self.embed

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.embed = value

    def get_output_embeddings(self) -> nn.Module:
        return self.lm_head

    def set_output_embeddings(self, value: nn.Module) -> None:
        self.lm_head = value

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> CausalLMOutput:
        """Logits for every position; with ``labels``, the next-token cross-entropy.

        Right padding needs no mask: a recurrent cell never looks ahead, so padded positions
        only affect their own (ignored, ``-100``) labels.
        """
        embeds = inputs_embeds if inputs_embeds is not None else self.embed(input_ids)
        hidden, _ = self.rnn(self.drop(embeds))
        logits = self.lm_head(self.drop(hidden))
        loss = None
        if labels is not None:
            shift_logits = logits[:, :-1, :].float()
            shift_labels = labels[:, 1:].to(logits.device)
            loss = nn.functional.cross_entropy(
                shift_logits.reshape(-1, shift_logits.size(-1)),
                shift_labels.reshape(-1),
                ignore_index=-100,
            )
        return CausalLMOutput(loss=loss, logits=logits)

    def prepare_inputs_for_generation(
        self, input_ids: torch.LongTensor, **kwargs: Any
    ) -> dict[str, Any]:
        """Feed the whole prefix each step (there is no cache to resume from)."""
        return {"input_ids": input_ids}


def register() -> None:
    """Make ``kubetune_rnn`` loadable with AutoConfig / AutoModelForCausalLM (idempotent)."""
    with contextlib.suppress(ValueError):  # already registered
        AutoConfig.register(MODEL_TYPE, KubetuneRNNConfig)
    with contextlib.suppress(ValueError):
        AutoModelForCausalLM.register(KubetuneRNNConfig, KubetuneRNNForCausalLM)
