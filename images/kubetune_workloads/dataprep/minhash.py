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
from typing import cast

import numpy as np

_WORD = re.compile(r"\w+")
_MAX_WORD_CACHE = 2_000_000
_MAX_ROWS_PER_CHUNK = 1 << 13  # 128 x 8192 x 8 bytes of products: fits the L2 caches
_U64 = np.uint64
RECALL_AT_THRESHOLD = 0.99


def _splitmix(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        x = x ^ (x >> _U64(30))
        x = x * _U64(0xBF58476D1CE4E5B9)
        x = x ^ (x >> _U64(27))
        x = x * _U64(0x94D049BB133111EB)
        mixed: np.ndarray = x ^ (x >> _U64(31))
        return mixed


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
        return cast("list[int]", ids)  # every None was filled above

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
        if not texts:
            return np.empty((0, self.num_perm), dtype=np.uint32)
        flat, offsets = self.batch_shingles(texts)
        return self._signatures(flat, offsets, len(texts))

    def sketches(self, texts: Sequence[str]) -> tuple[np.ndarray, list[np.ndarray]]:
        """Signatures and, per text, its sorted distinct shingle hashes (uint32): what exact
        Jaccard confirmation of LSH candidates needs."""
        if not texts:
            return np.empty((0, self.num_perm), dtype=np.uint32), []
        flat, offsets = self.batch_shingles(texts)
        sigs = self._signatures(flat, offsets, len(texts))
        small = flat.astype(np.uint32)
        bounds = [*offsets.tolist(), int(flat.size)]
        sets = [np.unique(small[bounds[i] : bounds[i + 1]]) for i in range(len(texts))]
        return sigs, sets

    def _signatures(self, flat: np.ndarray, offsets: np.ndarray, n_texts: int) -> np.ndarray:
        out = np.empty((n_texts, self.num_perm), dtype=np.uint32)
        bounds = np.append(offsets, flat.size)
        # One product buffer reused in place (no temporaries): less memory traffic, which two
        # tasks on two cores otherwise compete for.
        buffer = np.empty((self.num_perm, _MAX_ROWS_PER_CHUNK), dtype=np.uint64)
        doc = 0
        while doc < n_texts:
            # Chunks of whole documents, about _MAX_ROWS_PER_CHUNK shingles each.
            end = int(np.searchsorted(bounds, bounds[doc] + _MAX_ROWS_PER_CHUNK, "right")) - 1
            end = min(max(end, doc + 1), n_texts)
            lo, hi = bounds[doc], bounds[end]
            chunk = flat[lo:hi]
            if buffer.shape[1] < chunk.size:  # one document longer than a chunk
                buffer = np.empty((self.num_perm, chunk.size), dtype=np.uint64)
            hashed = buffer[:, : chunk.size]
            with np.errstate(over="ignore"):
                np.multiply(self.a[:, None], chunk[None, :], out=hashed)
                hashed += self.b[:, None]
                hashed >>= _U64(32)
            local = offsets[doc:end] - lo
            out[doc:end] = np.minimum.reduceat(hashed, local, axis=1).T.astype(np.uint32)
            doc = end
        return out


def jaccard_estimate(a: np.ndarray, b: np.ndarray) -> float:
    """Estimated Jaccard similarity of two signatures."""
    return float(np.count_nonzero(a == b)) / a.size


@functools.lru_cache(maxsize=64)
def recall_bands(
    threshold: float, num_perm: int, recall: float = RECALL_AT_THRESHOLD
) -> tuple[int, int]:
    """(bands, rows) for which a pair at exactly ``threshold`` becomes an LSH candidate with
    probability at least ``recall`` (``1 - (1 - t**rows) ** bands``), using as many rows per
    band as that allows (fewer false candidates). Candidates are confirmed by exact Jaccard
    similarity afterwards, so the bands favour recall and precision does not suffer."""
    for rows in range(num_perm, 0, -1):
        bands = num_perm // rows
        if candidate_probability(threshold, bands, rows) >= recall:
            return bands, rows
    return num_perm, 1


def candidate_probability(similarity: float, bands: int, rows: int) -> float:
    """Probability that two documents of Jaccard ``similarity`` share at least one band."""
    return float(1.0 - (1.0 - similarity**rows) ** bands)
