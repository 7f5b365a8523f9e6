"""Per-case text metrics: small pure functions, each computable by hand.

Every function takes the model's output and what the case expects and returns a float. Scales:
exactMatch, contains, regex, tokenF1, rouge* and offensiveRate are 0..1; bleu and chrf use
sacrebleu's 0..100 scale; length is in generated tokens, latency in seconds.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Sequence
from functools import cache
from typing import Any, Literal

from kubetune.api.evaluation import METRIC_NAMES

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = str.maketrans("", "", string.punctuation)

# Which way is better, for comparisons and regression gates. "neutral" metrics have no better
# side: any change counts as a regression and no case is a win or a loss.
Direction = Literal["higher", "lower", "neutral"]
DIRECTION: dict[str, Direction] = {
    "perplexity": "lower",
    "preferenceAccuracy": "higher",
    "winRate": "higher",
    "exactMatch": "higher",
    "contains": "higher",
    "regex": "higher",
    "tokenF1": "higher",
    "rouge1": "higher",
    "rouge2": "higher",
    "rougeL": "higher",
    "bleu": "higher",
    "chrf": "higher",
    "length": "neutral",
    "latency": "lower",
    "tokensPerSecond": "higher",
    "judge": "higher",
    "offensiveRate": "lower",
}
# Metrics that compare the output with what the case expects (their mean is the case's score):
# string matches, similarity to the reference, and the judge's score; in the API's order
# (kubetune.api.evaluation.MetricName).
_MATCH = frozenset({"exactMatch", "contains", "regex", "tokenF1"})
_SIMILARITY = frozenset({"rouge1", "rouge2", "rougeL", "bleu", "chrf"})
QUALITY_NAMES = _MATCH | _SIMILARITY | {"judge"}
QUALITY_METRICS = tuple(m for m in METRIC_NAMES if m in QUALITY_NAMES)


def normalize_text(text: str) -> str:
    """SQuAD normalization: lowercase, drop punctuation and articles, collapse whitespace."""
    text = text.lower().translate(_PUNCT)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def _prep(text: str, normalize: bool) -> str:
    return normalize_text(text) if normalize else text.strip()


def exact_match(output: str, answers: Sequence[str], normalize: bool = True) -> float:
    """1.0 when the output equals one of the answers (after normalization), else 0.0."""
    out = _prep(output, normalize)
    return float(any(out == _prep(a, normalize) for a in answers))


def contains(output: str, answers: Sequence[str], normalize: bool = True) -> float:
    """1.0 when one of the answers appears in the output (whole words when normalized)."""
    if normalize:
        out = f" {normalize_text(output)} "
        return float(any(f" {normalize_text(a)} " in out for a in answers if normalize_text(a)))
    return float(any(a in output for a in answers if a))


def regex_match(output: str, pattern: str) -> float:
    """1.0 when the pattern matches somewhere in the output."""
    return float(re.search(pattern, output, flags=re.DOTALL) is not None)


def _f1(pred: list[str], gold: list[str]) -> float:
    if not pred and not gold:
        return 1.0
    if not pred or not gold:
        return 0.0
    common = sum((Counter(pred) & Counter(gold)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(gold)
    return 2 * precision * recall / (precision + recall)


def token_f1(output: str, answers: Sequence[str], normalize: bool = True) -> float:
    """SQuAD token F1 against the best-matching answer."""
    pred = _prep(output, normalize).split()
    return max((_f1(pred, _prep(a, normalize).split()) for a in answers), default=0.0)


@cache
def _rouge_scorer(kind: str) -> Any:
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer([kind], use_stemmer=False)


def rouge(output: str, references: Sequence[str], kind: str) -> float:
    """ROUGE-1/2/L F-measure (rouge-score) against the best reference."""
    scorer = _rouge_scorer(kind)
    return max((scorer.score(ref, output)[kind].fmeasure for ref in references), default=0.0)


def bleu(output: str, references: Sequence[str]) -> float:
    """Sentence BLEU (sacrebleu, 0..100, exponential smoothing) against all references."""
    from sacrebleu.metrics import BLEU

    return float(BLEU(effective_order=True).sentence_score(output, list(references)).score)


def chrf(output: str, references: Sequence[str]) -> float:
    """Sentence chrF (sacrebleu, 0..100) against all references."""
    from sacrebleu.metrics import CHRF

    return float(CHRF().sentence_score(output, list(references)).score)
