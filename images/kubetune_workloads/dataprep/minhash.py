"""Vectorized MinHash signatures over word n-gram shingles (numpy, a batch at a time).

Words are hashed once each (crc32, cached), shingles are combined from word hashes with
random odd multipliers and mixed (splitmix64 finalizer), and every permutation is a
multiply-add-shift hash applied to the whole batch at once; the per-document minimum is one
``np.minimum.reduceat``. All constants come from a fixed seed, so signatures are identical from
run to run and process to process (Python's salted ``hash`` is never used).
"""

from __future__ import annotations

import functools
import re
import zlib
from collections.abc import Sequence

import numpy as np

_WORD = re.compile(r"\w+")
_MAX_WORD_CACHE = 2_000_000
_MAX_ROWS_PER_CHUNK = 1 << 15
_U64 = np.uint64


def _splitmix(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        x = x ^ (x >> _U64(30))
        x = x * _U64(0xBF58476D1CE4E5B9)
        x = x ^ (x >> _U64(27))
        x = x * _U64(0x94D049BB133111EB)
        return x ^ (x >> _U64(31))


class MinHasher:
    """MinHash signatures (``num_perm`` uint32 values) of word ``ngram`` shingles."""

    def __init__(self, num_perm: int = 128, ngram: int = 5, seed: int = 1) -> None:
        rng = np.random.default_rng(seed)
        self.num_perm = num_perm
        self.ngram = ngram
        self.a = rng.integers(1, 2**63, size=num_perm, dtype=np.uint64) | _U64(1)
        self.b = rng.integers(0, 2**63, size=num_perm, dtype=np.uint64)
        self.mult = rng.integers(1, 2**63, size=ngram, dtype=np.uint64) | _U64(1)
        self._word_ids: dict[str, int] = {}

    def _ids(self, text: str) -> list[int]:
        cache = self._word_ids
        words = _WORD.findall(text.lower())
        ids = list(map(cache.get, words))
        if None in ids:
            if len(cache) >= _MAX_WORD_CACHE:
                cache.clear()
            for i, h in enumerate(ids):
                if h is None:
                    word = words[i]
                    ids[i] = cache[word] = zlib.crc32(word.encode()) + 1
        return ids  # type: ignore[return-value]

    def shingles(self, text: str) -> np.ndarray:
        """Hashes (uint64) of the word n-grams of ``text`` (one shingle if it is shorter)."""
        flat, _ = self.batch_shingles([text])
        return flat

    def batch_shingles(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Shingle hashes of all ``texts`` concatenated, and each text's start offset."""
        ids: list[int] = []
        lengths = np.empty(len(texts), dtype=np.int64)
        for i, text in enumerate(texts):
            words = self._ids(text)
            lengths[i] = len(words)
            ids.extend(words)
        word_ids = np.asarray(ids, dtype=np.uint64)
        n = self.ngram
        starts = np.concatenate(([0], np.cumsum(lengths)[:-1]))
        counts = np.maximum(lengths - n + 1, 1)  # a short text is one shingle
        offsets = np.concatenate(([0], np.cumsum(counts)[:-1]))
        # Position of each shingle's first word in word_ids.
        first = np.repeat(starts - offsets, counts) + np.arange(counts.sum())
        padded = np.concatenate((word_ids, np.zeros(n, dtype=np.uint64)))
        # Words past the end of a short text must not leak in from the next one.
        limit = np.repeat(starts + lengths, counts)
        acc = np.zeros(first.size, dtype=np.uint64)
        with np.errstate(over="ignore"):
            for k in range(n):
                pos = first + k
                word = np.where(pos < limit, padded[np.minimum(pos, padded.size - 1)], 0)
                acc += word.astype(np.uint64) * self.mult[k]
        return _splitmix(acc), offsets

    def signatures(self, texts: Sequence[str]) -> np.ndarray:
        """``(len(texts), num_perm)`` uint32 signatures."""
        out = np.empty((len(texts), self.num_perm), dtype=np.uint32)
        if not texts:
            return out
        flat, offsets = self.batch_shingles(texts)
        bounds = np.append(offsets, flat.size)
        doc = 0
        while doc < len(texts):
            # Chunks of whole documents, about _MAX_ROWS_PER_CHUNK shingles each.
            end = int(np.searchsorted(bounds, bounds[doc] + _MAX_ROWS_PER_CHUNK, "right")) - 1
            end = min(max(end, doc + 1), len(texts))
            lo, hi = bounds[doc], bounds[end]
            chunk = flat[lo:hi]
            with np.errstate(over="ignore"):
                hashed = (self.a[:, None] * chunk[None, :] + self.b[:, None]) >> _U64(32)
            local = offsets[doc:end] - lo
            out[doc:end] = np.minimum.reduceat(hashed, local, axis=1).T.astype(np.uint32)
            doc = end
        return out


def jaccard_estimate(a: np.ndarray, b: np.ndarray) -> float:
    """Estimated Jaccard similarity of two signatures."""
    return float(np.count_nonzero(a == b)) / a.size


@functools.lru_cache(maxsize=64)
def optimal_bands(threshold: float, num_perm: int) -> tuple[int, int]:
    """(bands, rows) minimizing the equal-weighted false positive + negative probability mass
    of the LSH S-curve around ``threshold`` (the same criterion as datasketch)."""
    grid = np.linspace(0.0, 1.0, 401)
    below = grid <= threshold
    best = (1, num_perm)
    best_error = float("inf")
    for b in range(1, num_perm + 1):
        for r in range(1, num_perm // b + 1):
            prob = 1.0 - (1.0 - grid**r) ** b
            fp = np.trapezoid(prob[below], grid[below]) if below.sum() > 1 else 0.0
            fn = np.trapezoid(1.0 - prob[~below], grid[~below]) if (~below).sum() > 1 else 0.0
            error = 0.5 * fp + 0.5 * fn
            if error < best_error:
                best, best_error = (b, r), error
    return best
