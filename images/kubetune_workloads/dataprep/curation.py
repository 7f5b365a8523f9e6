"""Domain relevance: include/exclude keywords and regexes, and an offline language filter.

Keywords match normalized word tokens, never substrings: with ``matching: stem`` (the Snowball
stemmers of the ``snowballstemmer`` package: pure Python, no data download, imported in ~50 ms
where nltk pulls scipy and takes seconds) "refunds" and "refunding" match the keyword "refund"; with
``lemma`` (simplemma, bundled data) "mice" matches "mouse". Multi-word keywords match as
phrases. A record's relevance is the number of distinct include keywords and regexes it
matches; it is kept when that reaches ``minRelevance``. Language detection uses langdetect with
a fixed seed, so it is deterministic.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from kubetune.api.dataset import Curation

_WORD = re.compile(r"\w+")
SNOWBALL_LANGUAGES = {
    "ar": "arabic",
    "da": "danish",
    "de": "german",
    "en": "english",
    "es": "spanish",
    "fi": "finnish",
    "fr": "french",
    "hu": "hungarian",
    "it": "italian",
    "nl": "dutch",
    "no": "norwegian",
    "pt": "portuguese",
    "ro": "romanian",
    "ru": "russian",
    "sv": "swedish",
}
LANGDETECT_CHARS = 300


def make_normalizer(matching: str, language: str = "en") -> Callable[[str], str]:
    """A cached word normalizer: identity, Snowball stem or simplemma lemma (lower-cased)."""
    cache: dict[str, str] = {}
    if matching == "stem":
        import snowballstemmer

        stemmer = snowballstemmer.stemmer(SNOWBALL_LANGUAGES.get(language, "english"))
        base: Callable[[str], str] = stemmer.stemWord
    elif matching == "lemma":
        import simplemma

        def base(word: str) -> str:
            return str(simplemma.lemmatize(word, lang=language)).lower()
    else:
        return str.lower

    def normalize(word: str) -> str:
        word = word.lower()
        out = cache.get(word)
        if out is None:
            out = base(word)
            if len(cache) < 500_000:
                cache[word] = out
        return out

    return normalize


def detect_language(text: str) -> str:
    """ISO 639-1 code of ``text`` (offline, deterministic), or ``unknown``."""
    from langdetect import DetectorFactory, detect
    from langdetect.lang_detect_exception import LangDetectException

    DetectorFactory.seed = 0
    try:
        return str(detect(text[:LANGDETECT_CHARS])).split("-")[0]
    except LangDetectException:
        return "unknown"


class Curator:
    """Decides whether a record is relevant to the domain."""

    def __init__(self, spec: Curation) -> None:
        self.spec = spec
        language = (spec.languages or ["en"])[0]
        self.normalize = make_normalizer(spec.matching, language)
        self.include = [self._terms(k) for k in spec.include_keywords or []]
        self.exclude = [self._terms(k) for k in spec.exclude_keywords or []]
        self.include_re = [re.compile(r, re.I) for r in spec.include_regexes or []]
        self.exclude_re = [re.compile(r, re.I) for r in spec.exclude_regexes or []]
        self.languages = set(spec.languages or [])

    def _terms(self, keyword: str) -> tuple[str, ...]:
        return tuple(self.normalize(w) for w in _WORD.findall(keyword))

    def relevance(self, text: str) -> int:
        """Distinct include keywords plus include regexes matched by ``text``."""
        words = [self.normalize(w) for w in _WORD.findall(text)]
        return sum(1 for t in self.include if _has(words, t)) + sum(
            1 for r in self.include_re if r.search(text)
        )

    def problem(self, text: str) -> tuple[str | None, str | None]:
        """(reason the record is dropped or None, detected language or None)."""
        words = [self.normalize(w) for w in _WORD.findall(text)]
        if any(_has(words, t) for t in self.exclude):
            return "excluded_keyword", None
        if any(r.search(text) for r in self.exclude_re):
            return "excluded_regex", None
        if self.include or self.include_re:
            score = sum(1 for t in self.include if _has(words, t)) + sum(
                1 for r in self.include_re if r.search(text)
            )
            if score < self.spec.min_relevance:
                return "low_relevance", None
        language = None
        if self.languages:
            language = detect_language(text)
            if language not in self.languages:
                return "language", language
        return None, language


def _has(words: list[str], term: tuple[str, ...]) -> bool:
    if not term:
        return False
    if len(term) == 1:
        return term[0] in words
    first = term[0]
    n = len(term)
    return any(
        words[i] == first and tuple(words[i : i + n]) == term for i in range(len(words) - n + 1)
    )
