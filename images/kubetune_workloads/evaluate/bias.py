"""Bias probes: counterfactual prompt pairs built by swapping terms (he/she, names...).

Each prompt that mentions a probe term is asked twice: once with every term set to its group-A
form and once with its group-B form (the expected answer and references are swapped the same
way). The probe reports, per group, the mean score, output length and offensive-output rate;
the score gap between groups; how often the two outputs differ once the terms are swapped back;
and the pairs that differ most.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kubetune.api.evaluation import BiasProbe, ChatMessage, PromptCase

from kubetune_workloads.evaluate.scoring import CaseScore, prompt_text
from kubetune_workloads.evaluate.textmetrics import normalize_text

WORST_PAIRS = 5


@dataclass
class ProbePair:
    """The two counterfactual variants of one source prompt."""

    source: str
    a: PromptCase
    b: PromptCase


def _pattern(terms: list[str]) -> re.Pattern[str]:
    alternatives = "|".join(re.escape(t) for t in sorted(set(terms), key=len, reverse=True))
    return re.compile(rf"\b({alternatives})\b", re.IGNORECASE)


def _match_case(template: str, word: str) -> str:
    if template.isupper() and len(template) > 1:
        return word.upper()
    if template[:1].isupper():
        return word[:1].upper() + word[1:]
    return word


def swap_terms(text: str, mapping: dict[str, str]) -> str:
    """Replace whole-word occurrences of ``mapping``'s keys (any case), keeping capitalization."""
    if not mapping:
        return text
    lowered = {k.lower(): v for k, v in mapping.items()}
    return _pattern(list(mapping)).sub(
        lambda m: _match_case(m.group(0), lowered[m.group(0).lower()]), text
    )


def mentions(probe: BiasProbe, text: str) -> bool:
    """Whether ``text`` holds a term of the probe."""
    terms = [p.a for p in probe.pairs] + [p.b for p in probe.pairs]
    return _pattern(terms).search(text) is not None


def _variant(case: PromptCase, mapping: dict[str, str], case_id: str) -> PromptCase:
    def swap(text: str | None) -> str | None:
        return None if text is None else swap_terms(text, mapping)

    messages = (
        [ChatMessage(role=m.role, content=swap_terms(m.content, mapping)) for m in case.messages]
        if case.messages
        else None
    )
    return case.model_copy(
        update={
            "id": case_id,
            "prompt": swap(case.prompt),
            "messages": messages,
            "expected": swap(case.expected),
            "references": [swap_terms(r, mapping) for r in case.references]
            if case.references
            else None,
        }
    )


def build_pairs(probe: BiasProbe, cases: list[PromptCase]) -> list[ProbePair]:
    """Counterfactual pairs from the probe's templates, else from cases mentioning a term."""
    to_a = {p.b: p.a for p in probe.pairs}
    to_b = {p.a: p.b for p in probe.pairs}
    if probe.prompts:
        sources = [PromptCase(id=f"template-{i}", prompt=p) for i, p in enumerate(probe.prompts)]
    else:
        sources = cases
    pairs = []
    for case in sources:
        text = case.prompt or " ".join(m.content for m in case.messages or [])
        if not mentions(probe, text):
            continue
        base = f"{probe.name}:{case.id}"
        a = _variant(case, to_a, f"{base}:{probe.groups[0]}")
        b = _variant(case, to_b, f"{base}:{probe.groups[1]}")
        pairs.append(ProbePair(source=str(case.id), a=a, b=b))
    return pairs


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def summarize(
    probe: BiasProbe,
    pairs: list[ProbePair],
    results: dict[str, CaseScore],
    quality: Callable[[dict[str, float]], float | None],
    offensive: Callable[[str], bool],
) -> dict[str, Any]:
    """Per-group scores, the score gap, the output-difference rate and the worst pairs."""
    to_a = {p.b: p.a for p in probe.pairs}
    groups: dict[str, dict[str, list[float]]] = {
        g: {"s": [], "len": [], "off": []} for g in probe.groups
    }
    rows: list[dict[str, Any]] = []
    differing = 0
    for pair in pairs:
        ra, rb = results[str(pair.a.id)], results[str(pair.b.id)]
        qa, qb = quality(ra.scores), quality(rb.scores)
        for label, res, q in ((probe.groups[0], ra, qa), (probe.groups[1], rb, qb)):
            if q is not None:
                groups[label]["s"].append(q)
            groups[label]["len"].append(float(res.new_tokens))
            groups[label]["off"].append(float(offensive(res.output)))
        differs = normalize_text(swap_terms(rb.output, to_a)) != normalize_text(ra.output)
        differing += differs
        rows.append(_pair_row(pair, (ra, qa), (rb, qb), differs))
    summary_groups = {label: _group_summary(v) for label, v in groups.items()}
    sa, sb = (summary_groups[g]["meanScore"] for g in probe.groups)
    score_gap = abs(sa - sb) if sa is not None and sb is not None else None
    passed = (
        probe.max_score_gap is None or score_gap is None or score_gap <= probe.max_score_gap + 1e-12
    )
    rows.sort(key=lambda r: r["_rank"], reverse=True)
    worst = [{k: v for k, v in r.items() if k != "_rank"} for r in rows[:WORST_PAIRS]]
    return {
        "name": probe.name,
        "pairs": len(pairs),
        "groups": summary_groups,
        "scoreGap": score_gap,
        "outputDiffRate": differing / len(pairs) if pairs else None,
        "maxScoreGap": probe.max_score_gap,
        "passed": passed,
        "worst": worst,
    }


def _pair_row(
    pair: ProbePair,
    a: tuple[CaseScore, float | None],
    b: tuple[CaseScore, float | None],
    differs: bool,
) -> dict[str, Any]:
    """One pair for the report's worst list; ``_rank`` (score gap, differs) orders it."""
    (ra, qa), (rb, qb) = a, b
    gap = abs(qa - qb) if qa is not None and qb is not None else 0.0
    return {
        "source": pair.source,
        "promptA": prompt_text(pair.a),
        "promptB": prompt_text(pair.b),
        "outputA": ra.output,
        "outputB": rb.output,
        "scoreA": qa,
        "scoreB": qb,
        "differs": differs,
        "_rank": (gap, differs),
    }


def _group_summary(values: dict[str, list[float]]) -> dict[str, Any]:
    """One group's count and means (score ``s``, length ``len``, offensive ``off``)."""
    return {
        "n": len(values["len"]),
        "meanScore": _mean(values["s"]),
        "meanLength": _mean(values["len"]),
        "offensiveRate": _mean(values["off"]),
    }
