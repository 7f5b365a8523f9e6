"""Aggregates with bootstrap confidence intervals, per-tag breakdowns and paired comparisons."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np

from kubetune_workloads.evaluate.textmetrics import DIRECTION

CONFIDENCE = 0.95
TIE_TOLERANCE = 1e-9


@dataclass
class Aggregate:
    """A metric's mean over cases with a percentile bootstrap interval."""

    mean: float
    ci_low: float
    ci_high: float
    n: int

    def wire(self) -> dict[str, float | int]:
        return _camel(asdict(self))


@dataclass
class Comparison:
    """Candidate minus baseline on the cases both scored, with per-case outcomes."""

    delta: float
    ci_low: float
    ci_high: float
    wins: int
    ties: int
    losses: int
    n: int

    def wire(self) -> dict[str, float | int]:
        return _camel(asdict(self))


def _camel(data: dict[str, float | int]) -> dict[str, float | int]:
    out: dict[str, float | int] = {}
    for key, value in data.items():
        head, *rest = key.split("_")
        out[head + "".join(p.title() for p in rest)] = value
    return out


def bootstrap_interval(
    values: Sequence[float] | np.ndarray,
    samples: int,
    seed: int,
    statistic: Callable[[np.ndarray], np.ndarray] | None = None,
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean (or of ``statistic`` over resampled rows).

    ``statistic`` receives an array of shape (samples, n) of resampled values and returns one
    value per row. With no resamples, or one value, the interval collapses to the estimate.
    """
    data = np.asarray(values, dtype=float)
    stat = statistic or (lambda rows: rows.mean(axis=1))
    point = float(stat(data[None, :])[0])
    if samples <= 0 or len(data) < 2:
        return point, point
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(data), size=(samples, len(data)))
    dist = stat(data[idx])
    alpha = (1 - CONFIDENCE) / 2
    return float(np.quantile(dist, alpha)), float(np.quantile(dist, 1 - alpha))


def aggregate(values: Sequence[float], samples: int, seed: int) -> Aggregate | None:
    """Mean and interval of the defined values; None when there are none."""
    clean = [v for v in values if v is not None and not math.isnan(v)]
    if not clean:
        return None
    low, high = bootstrap_interval(clean, samples, seed)
    return Aggregate(mean=float(np.mean(clean)), ci_low=low, ci_high=high, n=len(clean))


def aggregate_all(
    scores: Mapping[str, Mapping[str, float]], samples: int, seed: int
) -> dict[str, Aggregate]:
    """``{case id: {metric: value}}`` -> ``{metric: Aggregate}``."""
    by_metric: dict[str, list[float]] = {}
    for case_scores in scores.values():
        for metric, value in case_scores.items():
            by_metric.setdefault(metric, []).append(value)
    out = {}
    for metric, values in by_metric.items():
        agg = aggregate(values, samples, seed)
        if agg is not None:
            out[metric] = agg
    return out


def by_tag(
    scores: Mapping[str, Mapping[str, float]], tags: Mapping[str, Sequence[str]]
) -> dict[str, dict[str, Aggregate]]:
    """Per-tag means (no intervals: tags are often small). Untagged cases go to ``untagged``."""
    grouped: dict[str, dict[str, dict[str, float]]] = {}
    for case_id, case_scores in scores.items():
        for tag in tags.get(case_id) or ["untagged"]:
            grouped.setdefault(tag, {})[case_id] = dict(case_scores)
    return {tag: aggregate_all(group, 0, 0) for tag, group in sorted(grouped.items())}


def outcome(metric: str, candidate: float, baseline: float) -> str:
    """``win``, ``tie`` or ``loss`` for the candidate on one case."""
    direction = DIRECTION.get(metric, "higher")
    diff = candidate - baseline
    if direction == "neutral" or abs(diff) <= TIE_TOLERANCE:
        return "tie"
    better = diff > 0 if direction == "higher" else diff < 0
    return "win" if better else "loss"


def compare(
    candidate: Mapping[str, Mapping[str, float]],
    baseline: Mapping[str, Mapping[str, float]],
    samples: int,
    seed: int,
) -> dict[str, Comparison]:
    """Paired deltas (candidate - baseline) per metric over the cases both models scored."""
    metrics: dict[str, list[tuple[float, float]]] = {}
    for case_id, cand_scores in candidate.items():
        base_scores = baseline.get(case_id, {})
        for metric, value in cand_scores.items():
            if metric in base_scores:
                metrics.setdefault(metric, []).append((value, base_scores[metric]))
    out: dict[str, Comparison] = {}
    for metric, pairs in metrics.items():
        diffs = [c - b for c, b in pairs]
        low, high = bootstrap_interval(diffs, samples, seed)
        outcomes = [outcome(metric, c, b) for c, b in pairs]
        out[metric] = Comparison(
            delta=float(np.mean(diffs)),
            ci_low=low,
            ci_high=high,
            wins=outcomes.count("win"),
            ties=outcomes.count("tie"),
            losses=outcomes.count("loss"),
            n=len(pairs),
        )
    return out


def regression(metric: str, candidate: float, baseline: float) -> float:
    """How much worse the candidate is (positive = worse); neutral metrics: any change."""
    direction = DIRECTION.get(metric, "higher")
    if direction == "higher":
        return baseline - candidate
    if direction == "lower":
        return candidate - baseline
    return abs(candidate - baseline)
