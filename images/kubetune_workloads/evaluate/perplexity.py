"""Perplexity of a model on a text set (a dataset artifact's validation split)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kubetune_workloads.datasetio import open_dataset
from kubetune_workloads.errors import invalid_input
from kubetune_workloads.evaluate.stats import Aggregate, Comparison, bootstrap_interval
from kubetune_workloads.prompts import record_text


@dataclass
class TokenLosses:
    """Summed negative log-likelihood and predicted-token count of each text."""

    nll: list[float]
    tokens: list[int]


def load_texts(path: Path, tokenizer: Any, template: str | None = None) -> list[str]:
    """Texts of the validation split (the train split when there is no validation split)."""
    dataset = open_dataset(path)
    records = dataset.records("validation") or dataset.records("train")
    texts = [t for t in (record_text(r, tokenizer, template) for r in records) if t.strip()]
    if not texts:
        raise invalid_input(f"perplexity dataset at {path} has no text records")
    return texts


def token_losses(model: Any, tokenizer: Any, texts: list[str], context: int | None) -> TokenLosses:
    """Per-text NLL sums; texts longer than the context are truncated to it."""
    import torch

    device = next(model.parameters()).device
    nll: list[float] = []
    tokens: list[int] = []
    with torch.no_grad():
        for text in texts:
            ids = tokenizer(text, add_special_tokens=True)["input_ids"]
            if context:
                ids = ids[:context]
            if len(ids) < 2:
                continue
            input_ids = torch.tensor([ids], device=device)
            loss = model(input_ids=input_ids, labels=input_ids).loss
            nll.append(float(loss) * (len(ids) - 1))
            tokens.append(len(ids) - 1)
    if not tokens:
        raise invalid_input("perplexity needs texts of at least two tokens")
    return TokenLosses(nll=nll, tokens=tokens)


MAX_LOG_PPL = 700.0  # exp() of more overflows a float; such a model is broken anyway


def _ppl(rows: np.ndarray) -> np.ndarray:
    mean_nll = rows[..., 0].sum(axis=-1) / rows[..., 1].sum(axis=-1)
    return np.exp(np.minimum(mean_nll, MAX_LOG_PPL))


def perplexity(losses: TokenLosses, samples: int, seed: int) -> Aggregate:
    """exp(total NLL / total tokens), with an interval from resampling texts."""
    data = np.column_stack([losses.nll, losses.tokens]).astype(float)
    low, high = bootstrap_interval(data, samples, seed, statistic=_ppl)  # type: ignore[arg-type]
    value = math.exp(min(sum(losses.nll) / sum(losses.tokens), MAX_LOG_PPL))
    return Aggregate(mean=value, ci_low=low, ci_high=high, n=len(losses.tokens))


def compare_perplexity(
    candidate: TokenLosses, baseline: TokenLosses, samples: int, seed: int
) -> Comparison | None:
    """Candidate minus baseline perplexity, resampling texts jointly (same texts, same order)."""
    if len(candidate.nll) != len(baseline.nll):
        return None  # different tokenizers dropped different texts: no paired comparison
    data = np.column_stack([candidate.nll, candidate.tokens, baseline.nll, baseline.tokens])

    def delta(rows: np.ndarray) -> np.ndarray:
        return _ppl(rows[..., 0:2]) - _ppl(rows[..., 2:4])

    low, high = bootstrap_interval(data.astype(float), samples, seed, statistic=delta)  # type: ignore[arg-type]
    diffs = _ppl(data[:, None, 0:2]) - _ppl(data[:, None, 2:4])
    value = float(delta(data[None, :, :].astype(float))[0])
    return Comparison(
        delta=value,
        ci_low=low,
        ci_high=high,
        wins=int((diffs < -1e-9).sum()),
        ties=int((abs(diffs) <= 1e-9).sum()),
        losses=int((diffs > 1e-9).sum()),
        n=len(diffs),
    )
