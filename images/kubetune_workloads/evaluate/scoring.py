"""Which metrics apply to which case, checked before any model loads, and per-case scoring."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from kubetune.api.evaluation import EvaluationTemplate, MetricSpec, PromptCase

from kubetune_workloads.errors import invalid_input
from kubetune_workloads.evaluate import textmetrics as tm
from kubetune_workloads.evaluate.generation import Generation
from kubetune_workloads.evaluate.judge import JudgeClient

# Computed on a data set, or on both models' answers together, not per case and model.
DATASET_METRICS = ("perplexity", "preferenceAccuracy", "winRate")
NEEDS_ANSWER = ("exactMatch", "contains", "tokenF1")
NEEDS_REFERENCES = ("rouge1", "rouge2", "rougeL", "bleu", "chrf")


def answers(case: PromptCase) -> list[str]:
    """Acceptable answers: ``expected`` then ``references``."""
    out = [case.expected] if case.expected is not None else []
    return out + list(case.references or [])


def prompt_text(case: PromptCase) -> str:
    """The prompt as plain text (chat turns as ``role: content`` lines)."""
    if case.messages:
        return "\n".join(f"{m.role}: {m.content}" for m in case.messages)
    return case.prompt or ""


def case_metrics(case: PromptCase, spec: EvaluationTemplate) -> list[str]:
    """The per-case metrics of a case: its own override, else the spec's."""
    names = case.metrics or [m.name for m in spec.metrics]
    return [n for n in dict.fromkeys(names) if n not in DATASET_METRICS]


def plan_metrics(cases: list[PromptCase], spec: EvaluationTemplate) -> dict[str, list[str]]:
    """``{case id: metrics}``; an InvalidInput error listing every case a metric cannot score."""
    plan: dict[str, list[str]] = {}
    problems: dict[str, list[str]] = {}
    for case in cases:
        names = case_metrics(case, spec)
        plan[str(case.id)] = names
        for name in names:
            missing = _missing(case, name, spec)
            if missing:
                problems.setdefault(missing, []).append(str(case.id))
    if problems:
        parts = []
        for what, ids in problems.items():
            shown = ", ".join(repr(i) for i in ids[:5]) + (" ..." if len(ids) > 5 else "")
            parts.append(f"{what}: case(s) {shown}")
        raise invalid_input("metrics cannot score some prompt cases; " + "; ".join(parts))
    return plan


def _missing(case: PromptCase, name: str, spec: EvaluationTemplate) -> str | None:
    if name in NEEDS_ANSWER and not answers(case):
        return f"{name} needs an expected answer or references"
    if name in NEEDS_REFERENCES and not answers(case):
        return f"{name} needs references (or an expected answer)"
    if name == "regex":
        if not case.pattern:
            return "regex needs a pattern"
        try:
            re.compile(case.pattern)
        except re.error as exc:
            return f"regex pattern is invalid ({exc})"
    if name == "judge" and spec.judge is None:
        return "judge needs spec.judge (an endpoint)"
    return None


@dataclass
class CaseScore:
    """One model's result on one case."""

    output: str
    scores: dict[str, float] = field(default_factory=dict)
    new_tokens: int = 0
    seconds: float = 0.0
    judge_error: str | None = None
    offensive_terms: list[str] = field(default_factory=list)


class Scorer:
    """Computes the planned metrics of a case from its generation."""

    def __init__(
        self, spec: EvaluationTemplate, lexicon: Any = None, judge: JudgeClient | None = None
    ) -> None:
        self.options: dict[str, MetricSpec] = {m.name: m for m in spec.metrics}
        self.lexicon = lexicon
        self.judge = judge

    def _normalize(self, name: str) -> bool:
        option = self.options.get(name)
        return option.normalize if option is not None else True

    def score(self, case: PromptCase, generation: Generation, metrics: list[str]) -> CaseScore:
        out = generation.text
        result = CaseScore(output=out, new_tokens=generation.new_tokens, seconds=generation.seconds)
        refs = answers(case)
        for name in metrics:
            value: float | None
            if name == "exactMatch":
                value = tm.exact_match(out, refs, self._normalize(name))
            elif name == "contains":
                value = tm.contains(out, refs, self._normalize(name))
            elif name == "tokenF1":
                value = tm.token_f1(out, refs, self._normalize(name))
            elif name == "regex":
                value = tm.regex_match(out, case.pattern or "")
            elif name in ("rouge1", "rouge2", "rougeL"):
                value = tm.rouge(out, refs, name)
            elif name == "bleu":
                value = tm.bleu(out, refs)
            elif name == "chrf":
                value = tm.chrf(out, refs)
            elif name == "length":
                value = float(generation.new_tokens)
            elif name == "latency":
                value = generation.seconds
            elif name == "tokensPerSecond":
                value = generation.batch_tokens_per_second
            elif name == "offensiveRate":
                result.offensive_terms = self.lexicon.find(out) if self.lexicon else []
                value = float(bool(result.offensive_terms))
            elif name == "judge":
                value = self._judge(case, out, result)
            else:  # pragma: no cover - MetricName is a closed set
                raise invalid_input(f"unknown metric {name!r}")
            if value is not None:
                result.scores[name] = value
        return result

    def _judge(self, case: PromptCase, output: str, result: CaseScore) -> float | None:
        if self.judge is None:
            return None
        refs = answers(case)
        verdict = self.judge.grade(prompt_text(case), output, refs[0] if refs else None)
        result.judge_error = verdict.error
        return verdict.score


def case_quality(scores: dict[str, float]) -> float | None:
    """Mean of the 0..1-scaled quality metrics of a case (bleu/chrf divided by 100)."""
    values = [
        scores[m] / (100.0 if m in ("bleu", "chrf") else 1.0)
        for m in tm.QUALITY_METRICS
        if m in scores and m != "judge"
    ]
    return sum(values) / len(values) if values else None
