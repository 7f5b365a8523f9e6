"""Perplexity of a model on a text set (a dataset artifact's validation split): the shared
implementation of :mod:`kubetune_workloads.likelihood`, with bootstrap intervals over records."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from kubetune_workloads.datasetio import open_dataset
from kubetune_workloads.errors import invalid_input
from kubetune_workloads.evaluate.stats import Aggregate, Comparison, bootstrap_interval
from kubetune_workloads.likelihood import MAX_LOG_PPL, TokenLosses, render_records

__all__ = ["TokenLosses", "compare_perplexity", "load_docs", "perplexity"]


def load_docs(path: Path, tokenizer: Any, template: str | None = None) -> list[list[int]]:
    """Records of the validation split (the train split when there is none), rendered and
    tokenized as training saw them (:mod:`kubetune_workloads.likelihood`)."""
    dataset = open_dataset(path)
    records = dataset.records("validation") or dataset.records("train")
    docs = render_records(records, tokenizer, template)
    if not docs:
        raise invalid_input(f"perplexity dataset at {path} has no text records")
    return docs


def _ppl(rows: np.ndarray) -> np.ndarray:
    mean_nll = rows[..., 0].sum(axis=-1) / rows[..., 1].sum(axis=-1)
    ppl: np.ndarray = np.exp(np.minimum(mean_nll, MAX_LOG_PPL))
    return ppl


def perplexity(losses: TokenLosses, samples: int, seed: int) -> Aggregate:
    """exp(total NLL / total tokens), with an interval from resampling texts."""
    data = np.column_stack([losses.nll, losses.tokens]).astype(float)
    low, high = bootstrap_interval(data, samples, seed, statistic=_ppl)
    return Aggregate(mean=losses.perplexity, ci_low=low, ci_high=high, n=len(losses.tokens))


def compare_perplexity(
    candidate: TokenLosses, baseline: TokenLosses, samples: int, seed: int
) -> Comparison | None:
    """Candidate minus baseline perplexity, resampling texts jointly (same texts, same order)."""
    if len(candidate.nll) != len(baseline.nll):
        return None  # different tokenizers dropped different texts: no paired comparison
    data = np.column_stack([candidate.nll, candidate.tokens, baseline.nll, baseline.tokens])

    def delta(rows: np.ndarray) -> np.ndarray:
        diff: np.ndarray = _ppl(rows[..., 0:2]) - _ppl(rows[..., 2:4])
        return diff

    low, high = bootstrap_interval(data.astype(float), samples, seed, statistic=delta)
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
