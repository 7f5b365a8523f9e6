"""Offensive-content lexicon: whole-word, leetspeak-aware matching and redaction.

The bundled term list lives in ``kubetune_workloads/data/offensive_terms.txt`` (one term or
phrase per line). Matching works on word tokens, never on substrings, so "Scunthorpe" and
"assess" are clean. A token matches a term when, after lower-casing, it equals the term or one
of its common inflections (``-s``, ``-es``, ``-ed``, ``-ing``, ``-er``, ``-ers``, ``-y``) once
leetspeak is undone (``sh1t``, ``$hit``, ``a$$``), letter runs are collapsed (``fuuuck``) or
``*`` masks are filled in (``f*ck``). Tokens made only of digits are never decoded (``455`` is a
number, not a word).

Used by the dataprep step (drop or redact records) and by the evaluate step (flag outputs)::

    lexicon = OffensiveLexicon.load(extra_terms=["frak"], allow_terms=["idiot"])
    lexicon.find("what the f*ck, you m0ron")   # ["fuck", "moron"]
    lexicon.redact("you m0ron")                # "you <OFFENSIVE>"
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

LEXICON_FILE = "offensive_terms.txt"
INFLECTIONS = ("", "s", "es", "ed", "ing", "er", "ers", "y")
_LEET = str.maketrans(
    {
        "0": "o",
        "1": "i",
        "3": "e",
        "4": "a",
        "5": "s",
        "7": "t",
        "8": "b",
        "9": "g",
        "@": "a",
        "$": "s",
        "!": "i",
        "|": "i",
        "+": "t",
    }
)
_LEET_L = str.maketrans({"1": "l", "|": "l", "!": "i"})
_TOKEN = re.compile(r"[\w@$*!|+]+")
_RUN3 = re.compile(r"(.)\1{2,}")


@dataclass(frozen=True)
class _Match:
    start: int
    end: int
    term: str


def _read_bundled() -> list[str]:
    text = (Path(__file__).parent / "data" / LEXICON_FILE).read_text("utf-8")
    return [line.strip() for line in text.splitlines()]


def _clean_terms(terms: Iterable[str]) -> list[str]:
    out = []
    for term in terms:
        term = " ".join(term.strip().lower().split())
        if term and not term.startswith("#"):
            out.append(term)
    return out


class OffensiveLexicon:
    """A set of offensive terms and phrases with whole-word, leetspeak-aware matching."""

    def __init__(self, terms: Iterable[str]) -> None:
        self.terms: frozenset[str] = frozenset(_clean_terms(terms))
        self._forms: dict[str, str] = {}  # inflected single-word form -> canonical term
        self._phrases: dict[str, list[tuple[str, ...]]] = {}  # first word -> phrases
        for term in sorted(self.terms):
            words = tuple(term.split())
            if len(words) == 1:
                for suffix in INFLECTIONS:
                    self._forms.setdefault(term + suffix, term)
                    if suffix[:1] in "eiy" and suffix and term[-1] not in "aeiouy":
                        self._forms.setdefault(term + term[-1] + suffix, term)  # frakking
            else:
                self._phrases.setdefault(words[0], []).append(words)
        self._masked_cache: dict[str, str | None] = {}
        self._starts = frozenset(self._forms) | frozenset(self._phrases)

    @classmethod
    def load(
        cls, extra_terms: Iterable[str] | None = None, allow_terms: Iterable[str] | None = None
    ) -> OffensiveLexicon:
        """The bundled lexicon plus ``extra_terms``, minus ``allow_terms``."""
        allowed = set(_clean_terms(allow_terms or ()))
        terms = [t for t in _clean_terms(_read_bundled()) if t not in allowed]
        terms += [t for t in _clean_terms(extra_terms or ()) if t not in allowed]
        return cls(terms)

    def find(self, text: str) -> list[str]:
        """The canonical terms found in ``text``, one entry per occurrence, in order."""
        return [m.term for m in self._matches(text)]

    def contains(self, text: str) -> bool:
        """Whether ``text`` holds at least one offensive term."""
        return next(self._matches(text), None) is not None

    def redact(self, text: str, placeholder: str = "<OFFENSIVE>") -> str:
        """``text`` with every offensive term or phrase replaced by ``placeholder``."""
        pieces: list[str] = []
        last = 0
        for match in self._matches(text):
            pieces.append(text[last : match.start])
            pieces.append(placeholder)
            last = match.end
        if not pieces:
            return text
        pieces.append(text[last:])
        return "".join(pieces)

    # --- matching -----------------------------------------------------------------------

    def _matches(self, text: str) -> Iterator[_Match]:
        lowered = text.lower()
        if len(lowered) != len(text):  # rare casefolding that changes length: keep offsets
            lowered = "".join(c.lower() if len(c.lower()) == 1 else c for c in text)
        has_runs = _RUN3.search(lowered) is not None
        tokens = _TOKEN.findall(lowered)
        if has_runs:
            words = [self._canonical_word(tok, True) for tok in tokens]
        else:
            words = [t if t.isalpha() else self._canonical_word(t, False) for t in tokens]
        if self._starts.isdisjoint(words):
            return  # the common case: a clean text, decided without building match objects
        spans = [m.span() for m in _TOKEN.finditer(lowered)]
        i = 0
        while i < len(words):
            matched = self._phrase_at(words, i)
            if matched is not None:
                term, length = matched
                yield _Match(spans[i][0], spans[i + length - 1][1], term)
                i += length
                continue
            single = self._forms.get(words[i])
            if single is not None:
                yield _Match(spans[i][0], spans[i][1], single)
            i += 1

    def _phrase_at(self, words: list[str], i: int) -> tuple[str, int] | None:
        phrases = self._phrases.get(words[i]) if self._phrases else None
        for phrase in phrases or ():
            if tuple(words[i : i + len(phrase)]) == phrase:
                return " ".join(phrase), len(phrase)
        return None

    def _canonical_word(self, token: str, has_runs: bool = True) -> str:
        """The lexicon form a token stands for, or the token itself when none fits."""
        if token.isalpha() and not (has_runs and _RUN3.search(token)):
            return token
        return _decode(token, self._forms, self._phrases, self._masked)

    def _masked(self, pattern: str) -> str | None:
        if pattern not in self._masked_cache:
            regex = re.compile("".join("[a-z]" if c == "*" else re.escape(c) for c in pattern))
            found = next((f for f in sorted(self._forms) if regex.fullmatch(f)), None)
            self._masked_cache[pattern] = found
        return self._masked_cache[pattern]


@functools.lru_cache(maxsize=65536)
def _variants(token: str) -> tuple[str, ...]:
    """Spellings a token may stand for: leet-decoded, punctuation-trimmed, runs collapsed."""
    bases = {token, token.strip("*!_")}
    out: list[str] = []
    for base in bases:
        if not base:
            continue
        if any(c.isalpha() for c in base):
            decoded = {base.translate(_LEET), base.translate(_LEET_L).translate(_LEET)}
        else:
            decoded = {base}
        for word in decoded:
            out.extend((word, _RUN3.sub(r"\1\1", word), _RUN3.sub(r"\1", word)))
    return tuple(dict.fromkeys(out))


def _decode(
    token: str,
    forms: dict[str, str],
    phrases: dict[str, list[tuple[str, ...]]],
    masked: Callable[[str], str | None],
) -> str:
    variants = _variants(token)
    for word in variants:
        if word in forms or word in phrases:
            return word
    for word in variants:
        if "*" in word.strip("*") and any(c.isalpha() for c in word):
            found = masked(word.strip("*"))
            if found:
                return found
    return token
