"""``winRate``: the candidate's answers against the baseline's, judged pairwise.

For every case both models answered, the judge (``spec.judge``) sees the prompt and the two
answers as A and B and names the better one (or a tie), twice: once with the candidate as A and
once as B (position-swap debiasing). The case scores 1 when the candidate wins both orders, 0
when it loses both, and 0.5 otherwise (a tie, or a judge that only prefers a position). The
win rate is the mean, with a bootstrap interval over cases; gates read it like any metric
(``{metric: winRate, min: 0.5}``). A case the judge could not decide is left out and counted.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from kubetune_workloads.evaluate.judge import JudgeClient, MalformedReply, reply_text
from kubetune_workloads.evaluate.stats import Aggregate, bootstrap_interval

METRIC = "winRate"
PAIRWISE_PROMPT = (
    "You are a strict evaluator. Compare two answers, A and B, to the PROMPT using this "
    "rubric:\n{rubric}\nReply with JSON only: "
    '{{"winner": "A" | "B" | "tie", "reason": "<one sentence>"}}.'
)
_WINNER = re.compile(r"\b(A|B|tie)\b", re.IGNORECASE)


@dataclass
class WinRates:
    """Per-case scores (1, 0.5, 0) and the cases the judge could not decide, with why."""

    scores: dict[str, float] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)


def parse_winner(body: bytes) -> str:
    """``A``, ``B`` or ``tie`` from a chat-completions reply; MalformedReply otherwise."""
    text, data = reply_text(body)
    if isinstance(data, dict) and isinstance(data.get("winner"), str):
        text = data["winner"]
    match = _WINNER.search(text)
    if match is None:
        raise MalformedReply("the judge's reply names no winner")
    found = match.group(1)
    return "tie" if found.lower() == "tie" else found.upper()


def _messages(judge: JudgeClient, prompt: str, a: str, b: str) -> list[dict[str, str]]:
    return [
        {"role": "system", "content": PAIRWISE_PROMPT.format(rubric=judge.spec.rubric)},
        {"role": "user", "content": f"PROMPT:\n{prompt}\n\nANSWER A:\n{a}\n\nANSWER B:\n{b}"},
    ]


def judge_pairs(judge: JudgeClient, prompts: dict[str, str], pairs: dict[str, Any]) -> WinRates:
    """``pairs``: case id -> (candidate output, baseline output); ``prompts``: case id -> text."""
    out = WinRates()
    for case_id, (mine, theirs) in pairs.items():
        prompt = prompts[case_id]
        first, error1, _ = judge.ask(_messages(judge, prompt, mine, theirs), parse_winner)
        second, error2, _ = judge.ask(_messages(judge, prompt, theirs, mine), parse_winner)
        if first is None or second is None:
            out.errors[case_id] = str(error1 or error2)
            continue
        wins = (first == "A") + (second == "B")
        losses = (first == "B") + (second == "A")
        out.scores[case_id] = 1.0 if wins == 2 else 0.0 if losses == 2 else 0.5
    return out


def win_rate(scores: dict[str, float], samples: int, seed: int) -> Aggregate | None:
    values = list(scores.values())
    if not values:
        return None
    low, high = bootstrap_interval(values, samples, seed)
    return Aggregate(mean=sum(values) / len(values), ci_low=low, ci_high=high, n=len(values))
