"""Exact and near-duplicate removal (first occurrence wins).

Exact: a blake2b digest of the normalized text (lower case, punctuation and whitespace
collapsed) in a set. Near: MinHash signatures (:mod:`.minhash`) in an LSH index of ``bands``
x ``rows`` chosen for the threshold; a band collision is confirmed by the estimated Jaccard
similarity of the two signatures, so near-duplicates are documents whose estimated similarity
reaches ``threshold``. Memory grows with the number of kept documents only (8 bytes per band
key plus ``4 x numPerm`` bytes of signature per document).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence

import numpy as np

from kubetune_workloads.dataprep.minhash import MinHasher, optimal_bands

_NON_WORD = re.compile(r"[\W_]+")


def normalized_digest(text: str) -> int:
    """64-bit digest of ``text`` ignoring case, punctuation and spacing."""
    norm = _NON_WORD.sub(" ", text.lower()).strip()
    return int.from_bytes(hashlib.blake2b(norm.encode(), digest_size=8).digest(), "big")


class ExactDeduper:
    """Remembers normalized digests; ``seen`` says whether a text was met before."""

    def __init__(self) -> None:
        self._digests: set[int] = set()

    def seen(self, text: str) -> bool:
        digest = normalized_digest(text)
        if digest in self._digests:
            return True
        self._digests.add(digest)
        return False


class NearDeduper:
    """MinHash LSH index over kept documents."""

    def __init__(
        self, threshold: float = 0.8, num_perm: int = 128, ngram: int = 5, seed: int = 1
    ) -> None:
        self.threshold = threshold
        self.hasher = MinHasher(num_perm=num_perm, ngram=ngram, seed=seed)
        self.bands, self.rows = optimal_bands(threshold, num_perm)
        rng = np.random.default_rng(seed + 1)
        self._band_mult = rng.integers(1, 2**63, size=self.rows, dtype=np.uint64) | np.uint64(1)
        self._tables: list[dict[int, int]] = [{} for _ in range(self.bands)]
        self._sigs = np.empty((1024, num_perm), dtype=np.uint32)
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def duplicates(self, texts: Sequence[str]) -> list[bool]:
        """For each text in order: True when it nearly duplicates an earlier kept text.

        Texts that are not duplicates are added to the index (also for later texts of the
        same batch).
        """
        if not texts:
            return []
        sigs = self.hasher.signatures(texts)
        used = sigs[:, : self.bands * self.rows].astype(np.uint64)
        banded = used.reshape(len(texts), self.bands, self.rows)
        with np.errstate(over="ignore"):
            keys = (banded * self._band_mult[None, None, :]).sum(axis=2, dtype=np.uint64)
        out = []
        for i, row in enumerate(keys.tolist()):
            out.append(self._check_and_add(sigs[i], row))
        return out

    def _check_and_add(self, sig: np.ndarray, keys: list[int]) -> bool:
        tables = self._tables
        checked: set[int] = set()
        for band, key in enumerate(keys):
            other = tables[band].get(key)
            if other is None or other in checked:
                continue
            checked.add(other)
            similarity = np.count_nonzero(self._sigs[other] == sig) / sig.size
            if similarity >= self.threshold:
                return True
        index = self._count
        if index == len(self._sigs):
            self._sigs = np.concatenate([self._sigs, np.empty_like(self._sigs)])
        self._sigs[index] = sig
        self._count += 1
        for band, key in enumerate(keys):
            tables[band].setdefault(key, index)
        return False
