"""Perplexity on a dataset's validation split, over the same tokens before and after.

The validation records are rendered and tokenized once with the input model's tokenizer, as
training rendered them (:mod:`kubetune_workloads.likelihood`, the implementation FinetuneJob and
Evaluation use too: BOS + text + EOS, blocks of the training sequence length); the same
blocks are fed to both models, so the two numbers differ only because the weights do.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kubetune_workloads.datasetio import PreparedDataset
from kubetune_workloads.errors import invalid_input
from kubetune_workloads.likelihood import (
    BATCH_SIZE,
    block_length,
    packed_for,
    render_records,
    stream_losses,
)


@dataclass
class EvalBatches:
    """The rendered records shared by the before and after measurements."""

    docs: list[list[int]]
    seq_len: int
    packed: bool = True

    @property
    def tokens(self) -> int:
        return sum(len(d) for d in self.docs)

    @property
    def batches(self) -> list[int]:
        """Block start offsets grouped as the model sees them (for the report's count)."""
        blocks = max(1, -(-self.tokens // self.seq_len))
        return list(range(-(-blocks // BATCH_SIZE)))


def build_batches(
    dataset: PreparedDataset,
    tokenizer: Any,
    max_batches: int,
    max_positions: int | None,
    template: str | None = None,
    trained_seq_len: int | None = None,
    objective: str | None = None,
) -> EvalBatches:
    """Render the validation split: at most ``max_batches`` batches of blocks."""
    seq_len = block_length(trained_seq_len, max_positions)
    docs = render_records(
        dataset.iter_records("validation"),
        tokenizer,
        template,
        max_tokens=max_batches * BATCH_SIZE * seq_len,
    )
    if sum(len(d) for d in docs) < 2:
        raise invalid_input(
            f"dataset {dataset.path} has no validation text to measure perplexity on"
        )
    return EvalBatches(docs=docs, seq_len=seq_len, packed=packed_for(objective))


def perplexity(model: Any, data: EvalBatches) -> float:
    """exp(mean next-token negative log-likelihood) over every predicted token."""
    return stream_losses(model, data.docs, data.seq_len, data.packed).perplexity
