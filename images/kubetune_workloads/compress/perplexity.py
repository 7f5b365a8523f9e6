"""Perplexity on a dataset's validation split, over the same token batches before and after.

The validation records are rendered to text as the input model saw them in training, tokenized
once with the input model's tokenizer, joined with EOS and cut into fixed-length blocks; the same
list of batches is fed to both models, so the two numbers differ only because the weights do.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from kubetune_workloads.datasetio import PreparedDataset
from kubetune_workloads.errors import invalid_input
from kubetune_workloads.prompts import record_text

DEFAULT_SEQ_LEN = 256
BATCH_SIZE = 4


@dataclass
class EvalBatches:
    """Token blocks shared by the before and after measurements."""

    batches: list[Any]
    tokens: int
    seq_len: int


def build_batches(
    dataset: PreparedDataset,
    tokenizer: Any,
    max_batches: int,
    max_positions: int | None,
    template: str | None = None,
) -> EvalBatches:
    """Tokenize the validation split into at most ``max_batches`` batches of equal blocks."""
    import torch

    seq_len = min(DEFAULT_SEQ_LEN, max_positions or DEFAULT_SEQ_LEN)
    wanted = max_batches * BATCH_SIZE * seq_len
    ids: list[int] = []
    eos = tokenizer.eos_token_id
    for record in dataset.iter_records("validation"):
        text = record_text(record, tokenizer, template)
        if not text:
            continue
        ids.extend(tokenizer(text, add_special_tokens=False)["input_ids"])
        if eos is not None:
            ids.append(eos)
        if len(ids) >= wanted:
            break
    if len(ids) < 2:
        raise invalid_input(
            f"dataset {dataset.path} has no validation text to measure perplexity on"
        )
    ids = ids[:wanted]
    seq_len = min(seq_len, len(ids))
    blocks = [ids[i : i + seq_len] for i in range(0, len(ids) - seq_len + 1, seq_len)]
    batches = [
        torch.tensor(blocks[i : i + BATCH_SIZE], dtype=torch.long)
        for i in range(0, len(blocks), BATCH_SIZE)
    ]
    return EvalBatches(
        batches=batches, tokens=sum(int(b.numel()) for b in batches), seq_len=seq_len
    )


def perplexity(model: Any, data: EvalBatches) -> float:
    """exp(mean next-token negative log-likelihood) over every predicted token of the batches."""
    import torch
    import torch.nn.functional as F

    device = _input_device(model)
    nll, count = 0.0, 0
    with torch.inference_mode():
        for batch in data.batches:
            batch = batch.to(device)
            logits = model(input_ids=batch).logits.float()
            loss = F.cross_entropy(
                logits[:, :-1].reshape(-1, logits.size(-1)),
                batch[:, 1:].reshape(-1),
                reduction="sum",
            )
            nll += float(loss)
            count += int(batch[:, 1:].numel())
    return math.exp(nll / count) if count else float("nan")


def _input_device(model: Any) -> Any:
    embeddings = model.get_input_embeddings()
    return embeddings.weight.device
