"""The outcome of an evaluation: aggregates, comparison, gates and probes, as plain data.

:func:`analyse` turns the model runs into an :class:`Outcome`; :func:`results_json`,
:func:`case_rows` and :func:`step_metrics` give its three written forms (``results.json``,
``cases.jsonl`` and the termination-message metrics).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kubetune.api.evaluation import EvaluationTemplate, PromptCase

from kubetune_workloads.evaluate.gates import GateResult, check_gates, skipped_gate
from kubetune_workloads.evaluate.models import ModelRun
from kubetune_workloads.evaluate.perplexity import compare_perplexity, perplexity
from kubetune_workloads.evaluate.preference_accuracy import METRIC as PREFERENCE
from kubetune_workloads.evaluate.preference_accuracy import (
    accuracy,
    compare_accuracy,
    pair_wins,
)
from kubetune_workloads.evaluate.scoring import case_quality, prompt_text
from kubetune_workloads.evaluate.stats import (
    CONFIDENCE,
    Aggregate,
    Comparison,
    aggregate_all,
    by_tag,
    compare,
    outcome,
)
from kubetune_workloads.evaluate.winrate import METRIC as WIN_RATE
from kubetune_workloads.evaluate.winrate import win_rate

WORST_CASES = 10


@dataclass
class Outcome:
    """What the evaluation found."""

    cases: list[PromptCase]
    candidate: ModelRun
    baseline: ModelRun | None
    aggregates: dict[str, Aggregate]
    baseline_aggregates: dict[str, Aggregate] | None
    tags: dict[str, dict[str, Aggregate]]
    baseline_tags: dict[str, dict[str, Aggregate]] | None
    comparison: dict[str, Comparison]
    gates: list[GateResult]
    probes: list[dict[str, Any]] = field(default_factory=list)
    # Cases left out of every verdict: not scored by the candidate, or (with a baseline) by
    # one of the two models. Aggregates, deltas and gates use the remaining cases only.
    unpaired: dict[str, str] = field(default_factory=dict)

    @property
    def failed_gates(self) -> list[str]:
        failed = [g.name for g in self.gates if not g.passed]
        return failed + [f"bias:{p['name']}" for p in self.probes if not p["passed"]]

    @property
    def passed(self) -> bool:
        return not self.failed_gates


def analyse(
    spec: EvaluationTemplate,
    cases: list[PromptCase],
    candidate: ModelRun,
    baseline: ModelRun | None,
    probes: list[dict[str, Any]],
) -> Outcome:
    """Aggregate, compare and gate the runs."""
    samples, seed = spec.bootstrap_samples, spec.generation.seed
    tags = {str(c.id): list(c.tags or []) for c in cases}
    cand_scores, base_scores, unpaired = paired_scores(cases, candidate, baseline)
    aggregates = aggregate_all(cand_scores, samples, seed)
    base_aggs = aggregate_all(base_scores, samples, seed) if base_scores is not None else None
    comparison = compare(cand_scores, base_scores, samples, seed) if base_scores else {}
    if candidate.perplexity is not None:
        aggregates["perplexity"] = perplexity(candidate.perplexity, samples, seed)
        if baseline is not None and baseline.perplexity is not None and base_aggs is not None:
            base_aggs["perplexity"] = perplexity(baseline.perplexity, samples, seed)
            paired = compare_perplexity(candidate.perplexity, baseline.perplexity, samples, seed)
            if paired is not None:
                comparison["perplexity"] = paired
    if candidate.preference_logps is not None:
        reference = baseline.preference_logps if baseline is not None else None
        wins = pair_wins(candidate.preference_logps, reference)
        aggregates[PREFERENCE] = accuracy(wins, samples, seed)
        if reference is not None and base_aggs is not None:
            base_wins = pair_wins(reference, reference)
            base_aggs[PREFERENCE] = accuracy(base_wins, samples, seed)
            paired_pref = compare_accuracy(wins, base_wins, samples, seed)
            if paired_pref is not None:
                comparison[PREFERENCE] = paired_pref
    if candidate.win_rates is not None:
        judged = {k: v for k, v in candidate.win_rates.scores.items() if k in cand_scores}
        found = win_rate(judged, samples, seed)
        if found is not None:
            aggregates[WIN_RATE] = found
    means = {k: v.mean for k, v in aggregates.items()}
    base_means = {k: v.mean for k, v in base_aggs.items()} if base_aggs is not None else None
    return Outcome(
        cases=cases,
        candidate=candidate,
        baseline=baseline,
        aggregates=aggregates,
        baseline_aggregates=base_aggs,
        tags=by_tag(cand_scores, tags),
        baseline_tags=by_tag(base_scores, tags) if base_scores is not None else None,
        comparison=comparison,
        gates=check_gates(spec.gates or [], means, base_means)
        + skipped_gate(spec.max_skipped_ratio, len(unpaired), len(cases)),
        probes=probes,
        unpaired=unpaired,
    )


def paired_scores(
    cases: list[PromptCase], candidate: ModelRun, baseline: ModelRun | None
) -> tuple[dict[str, dict[str, float]], dict[str, dict[str, float]] | None, dict[str, str]]:
    """The scores every verdict uses, and the cases left out with why.

    Without a baseline: the candidate's scored cases. With one: only cases both models scored,
    and per case only the metrics both have (a judge error on one side drops that metric for
    that case on both), so a mean or a gate never compares different sets of cases.
    """
    ids = [str(c.id) for c in cases]
    cand, unpaired = {}, {}
    base: dict[str, dict[str, float]] | None = {} if baseline is not None else None
    for case_id in ids:
        mine = candidate.results.get(case_id)
        theirs = baseline.results.get(case_id) if baseline is not None else None
        if mine is None:
            unpaired[case_id] = "candidate: " + candidate.skipped.get(case_id, "not generated")
            continue
        if baseline is None or base is None:
            cand[case_id] = dict(mine.scores)
            continue
        if theirs is None:
            unpaired[case_id] = "baseline: " + baseline.skipped.get(case_id, "not generated")
            continue
        common = set(mine.scores) & set(theirs.scores)
        cand[case_id] = {m: v for m, v in mine.scores.items() if m in common}
        base[case_id] = {m: v for m, v in theirs.scores.items() if m in common}
    return cand, base, unpaired


def worst_cases(result: Outcome, limit: int = WORST_CASES) -> list[dict[str, Any]]:
    """Cases with the lowest candidate quality, biggest losses to the baseline first on ties."""
    ranked = []
    for case in result.cases:
        case_id = str(case.id)
        cand = result.candidate.results.get(case_id)
        if cand is None:
            continue
        quality = case_quality(cand.scores)
        base = result.baseline.results.get(case_id) if result.baseline else None
        base_quality = case_quality(base.scores) if base else None
        loss = (base_quality - quality) if quality is not None and base_quality is not None else 0
        flagged = bool(cand.offensive_terms) or not cand.output.strip()
        key = (quality if quality is not None else 1.0, -loss, not flagged)
        ranked.append((key, case, cand, base, quality, base_quality))
    ranked.sort(key=lambda r: r[0])
    out = []
    for _, case, cand, base, quality, base_quality in ranked[:limit]:
        out.append(
            {
                "id": case.id,
                "prompt": prompt_text(case),
                "expected": case.expected,
                "output": cand.output,
                "baselineOutput": base.output if base else None,
                "quality": quality,
                "baselineQuality": base_quality,
                "offensiveTerms": cand.offensive_terms or None,
            }
        )
    return out


def _run_summary(run: ModelRun, aggs: dict[str, Aggregate], tags: dict[str, Any]) -> dict[str, Any]:
    judge_errors = sum(1 for r in run.results.values() if r.judge_error)
    return {
        "uri": run.uri,
        "aggregates": {k: v.wire() for k, v in aggs.items()},
        "byTag": {t: {k: v.wire() for k, v in m.items()} for t, m in tags.items()},
        "generation": {
            "tokens": run.tokens,
            "seconds": run.seconds,
            "tokensPerSecond": run.tokens_per_second,
        },
        "casesScored": len(run.results),
        "skipped": run.skipped,
        "emptyOutputs": run.empty_outputs(),
        "judgeErrors": judge_errors,
    }


def results_json(result: Outcome, spec: EvaluationTemplate) -> dict[str, Any]:
    """The full ``results.json`` document."""
    return {
        "passed": result.passed,
        "failedGates": result.failed_gates,
        "cases": len(result.cases),
        "pairedCases": len(result.cases) - len(result.unpaired),
        "unpairedCases": result.unpaired,
        "metrics": [m.name for m in spec.metrics],
        "confidence": CONFIDENCE,
        "bootstrapSamples": spec.bootstrap_samples,
        "candidate": _run_summary(result.candidate, result.aggregates, result.tags),
        "baseline": _run_summary(
            result.baseline, result.baseline_aggregates or {}, result.baseline_tags or {}
        )
        if result.baseline
        else None,
        "comparison": {k: v.wire() for k, v in result.comparison.items()},
        "gates": [g.wire() for g in result.gates],
        "biasProbes": result.probes,
        "worstCases": worst_cases(result),
    }


def case_rows(result: Outcome) -> list[dict[str, Any]]:
    """One ``cases.jsonl`` row per case: the case, both outputs and scores, per-metric outcome."""
    rows = []
    for case in result.cases:
        case_id = str(case.id)
        row: dict[str, Any] = case.model_dump(mode="json", by_alias=True, exclude_none=True)
        for label, run in (("candidate", result.candidate), ("baseline", result.baseline)):
            if run is None:
                continue
            scored = run.results.get(case_id)
            if scored is None:
                row[label] = {"skipped": run.skipped.get(case_id, "not generated")}
                continue
            row[label] = {
                "output": scored.output,
                "scores": scored.scores,
                "newTokens": scored.new_tokens,
                "seconds": scored.seconds,
            }
            if scored.judge_error:
                row[label]["judgeError"] = scored.judge_error
            if scored.offensive_terms:
                row[label]["offensiveTerms"] = scored.offensive_terms
        if result.baseline is not None:
            cand = result.candidate.results.get(case_id)
            base = result.baseline.results.get(case_id)
            if cand and base:
                row["outcome"] = {
                    m: outcome(m, v, base.scores[m])
                    for m, v in cand.scores.items()
                    if m in base.scores
                }
        rows.append(row)
    return rows


def step_metrics(result: Outcome) -> dict[str, float]:
    """Candidate aggregate means plus ``<metric>Delta`` against the baseline."""
    metrics = {k: v.mean for k, v in result.aggregates.items()}
    metrics.update({f"{k}Delta": v.delta for k, v in result.comparison.items()})
    return metrics
