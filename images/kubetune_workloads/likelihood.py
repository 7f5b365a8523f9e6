"""The one perplexity implementation, shared by FinetuneJob, Compression and Evaluation.

Records are rendered exactly as continued pre-training feeds them to a model: each record's text
(:func:`kubetune_workloads.prompts.record_text`: its instruction format or chat template) is
tokenized without special tokens and framed by BOS (when the tokenizer has a distinct one) and
EOS; the records are concatenated into one stream (continued pre-training, the way it trains) or
taken one by one (instruction and chat models, which train on one example at a time), and cut
into blocks of the training sequence length (``ModelInfo.max_seq_length``, else 256, at most the
model's context). Every predicted token of every block counts, and its negative log-likelihood
is attributed to the record it belongs to, so the same numbers give the overall perplexity (exp
of total NLL over total tokens) and per-record values to resample for confidence intervals and
paired comparisons.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from kubetune_workloads.errors import invalid_input
from kubetune_workloads.prompts import record_text

DEFAULT_BLOCK = 256
BATCH_SIZE = 4
MAX_LOG_PPL = 700.0  # exp() of more overflows a float; such a model is broken anyway


@dataclass
class TokenLosses:
    """Summed negative log-likelihood and predicted-token count of each record."""

    nll: list[float]
    tokens: list[int]

    @property
    def perplexity(self) -> float:
        total = sum(self.tokens)
        return math.exp(min(sum(self.nll) / total, MAX_LOG_PPL)) if total else float("nan")


def block_length(trained: int | None, context: int | None) -> int:
    """The training sequence length when known, else 256; never beyond the model's context."""
    block = trained or DEFAULT_BLOCK
    return min(block, context) if context else block


def render_ids(record: dict[str, Any], tokenizer: Any, template: str | None = None) -> list[int]:
    """One record's token ids as training sees them: BOS + text + EOS (no other specials)."""
    text = record_text(record, tokenizer, template)
    if not text.strip():
        return []
    ids = list(tokenizer(text, add_special_tokens=False)["input_ids"])
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    head = [bos] if bos is not None and bos != eos else []
    tail = [eos] if eos is not None else []
    return head + ids + tail


def render_records(
    records: Iterable[dict[str, Any]],
    tokenizer: Any,
    template: str | None = None,
    max_tokens: int | None = None,
) -> list[list[int]]:
    """Rendered records, up to ``max_tokens`` in all (the last one cut to fit)."""
    docs: list[list[int]] = []
    total = 0
    for record in records:
        ids = render_ids(record, tokenizer, template)
        if not ids:
            continue
        if max_tokens is not None and total + len(ids) > max_tokens:
            ids = ids[: max_tokens - total]
            if ids:
                docs.append(ids)
            break
        docs.append(ids)
        total += len(ids)
    return docs


def stream_losses(
    model: Any, docs: Sequence[Sequence[int]], block: int, packed: bool = True
) -> TokenLosses:
    """Per-record NLL sums, each predicted token counted for the record it belongs to.

    ``packed`` (how continued pre-training trains): the records are one stream cut into
    ``block``-token blocks. Otherwise (instruction and chat training, packed or not, sees one
    example at a time): each record alone, cut into blocks when longer than ``block``.
    The model must be in eval mode (loaded models are; training calls its own eval mode).
    """
    import torch
    import torch.nn.functional as F

    pieces: list[tuple[list[int], list[int]]] = []
    if packed:
        stream = [t for ids in docs for t in ids]
        owner = [i for i, ids in enumerate(docs) for _ in ids]
        pieces.append((stream, owner))
    else:
        pieces.extend((list(ids), [i] * len(ids)) for i, ids in enumerate(docs))
    blocks = [
        (ids[i : i + block], owners[i : i + block])
        for ids, owners in pieces
        for i in range(0, len(ids), block)
        if len(ids[i : i + block]) > 1
    ]
    if not blocks:
        raise invalid_input("perplexity needs at least two tokens of text")
    by_length: dict[int, list[tuple[list[int], list[int]]]] = {}
    for item in blocks:
        by_length.setdefault(len(item[0]), []).append(item)
    groups = [
        same[i : i + BATCH_SIZE]
        for _, same in sorted(by_length.items())
        for i in range(0, len(same), BATCH_SIZE)
    ]
    nll = [0.0] * len(docs)
    tokens = [0] * len(docs)
    device = model.get_input_embeddings().weight.device
    with torch.inference_mode():
        for group in groups:
            ids = torch.tensor([g[0] for g in group], dtype=torch.long, device=device)
            logits = model(input_ids=ids, use_cache=False).logits.float()
            losses = F.cross_entropy(
                logits[:, :-1].reshape(-1, logits.size(-1)),
                ids[:, 1:].reshape(-1),
                reduction="none",
            ).view(len(group), -1)
            for row, (_, owners) in enumerate(group):
                for position, value in enumerate(losses[row].tolist()):
                    doc = owners[position + 1]
                    nll[doc] += value
                    tokens[doc] += 1
    kept = [i for i, count in enumerate(tokens) if count]
    return TokenLosses(nll=[nll[i] for i in kept], tokens=[tokens[i] for i in kept])


def packed_for(objective: str | None) -> bool:
    """Whether a model trained with ``objective`` saw records packed into one stream."""
    return objective == "continued-pretraining"
