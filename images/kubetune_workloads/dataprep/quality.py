"""Gopher/C4-style quality heuristics over a document's words and lines.

Defaults come from :class:`kubetune.api.dataset.QualityFilter` (mean word length 2.5-12,
symbol ratio <= 0.1, duplicate lines <= 30%, top word 3-gram <= 30% of characters, >= 60% of
words alphabetic, <= 50% boilerplate lines, terminal punctuation off). Each check returns the
reason a document fails, so the report says which heuristic removed what.
"""

from __future__ import annotations

import re
from collections import Counter

from kubetune.api.dataset import QualityFilter

BOILERPLATE = re.compile(
    r"cookie|click here|all rights reserved|privacy policy|terms of (use|service)|"
    r"subscribe to|sign up for|javascript|lorem ipsum|read more|share this|"
    r"accept (all )?cookies|powered by|copyright ©|\bunsubscribe\b",
    re.I,
)
_ALPHA_WORD = re.compile(r"\S*[^\W\d_]\S*")
TERMINAL = (".", "!", "?", '"', "'", "”", "’", ":", ")")
MIN_WORDS_FOR_NGRAMS = 20
MIN_LINES_FOR_LINE_CHECKS = 3


def quality_problem(text: str, spec: QualityFilter) -> str | None:
    """The first heuristic ``text`` fails (e.g. ``symbol_ratio``), or None when it passes."""
    if not spec.enabled:
        return None
    words = text.split()
    if not words:
        return "no_words"
    n = len(words)
    chars = sum(map(len, words))
    mean = chars / n
    if spec.min_mean_word_length is not None and mean < spec.min_mean_word_length:
        return "mean_word_length"
    if spec.max_mean_word_length is not None and mean > spec.max_mean_word_length:
        return "mean_word_length"
    if spec.max_symbol_ratio is not None:
        symbols = text.count("#") + text.count("...") + text.count("…")
        if symbols / n > spec.max_symbol_ratio:
            return "symbol_ratio"
    if spec.min_alpha_word_fraction is not None:
        alpha = len(_ALPHA_WORD.findall(text))
        if alpha / n < spec.min_alpha_word_fraction:
            return "alpha_words"
    lines = [line.strip() for line in text.split("\n") if line.strip()]
    if len(lines) >= MIN_LINES_FOR_LINE_CHECKS:
        problem = _line_problem(lines, spec)
        if problem:
            return problem
    if spec.max_top_ngram_fraction is not None and n >= MIN_WORDS_FOR_NGRAMS:
        lowered = [w.lower() for w in words]
        grams = Counter(zip(lowered, lowered[1:], lowered[2:], strict=False))
        ((gram, count),) = grams.most_common(1)
        if count > 1:
            covered = count * sum(len(w) for w in gram)
            if covered / chars > spec.max_top_ngram_fraction:
                return "repeated_ngrams"
    if spec.require_terminal_punctuation:
        ended = sum(1 for line in lines if line.endswith(TERMINAL))
        if ended / max(len(lines), 1) < 0.5:
            return "terminal_punctuation"
    return None


def _line_problem(lines: list[str], spec: QualityFilter) -> str | None:
    if spec.max_duplicate_line_fraction is not None:
        counts = Counter(lines)
        repeated = sum(c - 1 for c in counts.values() if c > 1)
        if repeated / len(lines) > spec.max_duplicate_line_fraction:
            return "repeated_lines"
    if spec.max_boilerplate_line_fraction is not None:
        boiler = sum(1 for line in lines if len(line) < 200 and BOILERPLATE.search(line))
        if boiler / len(lines) > spec.max_boilerplate_line_fraction:
            return "boilerplate"
    return None
