"""Exact and near-duplicate removal (first occurrence of each group or cluster wins).

Exact: a blake2b digest of the normalized text (lower case, punctuation and whitespace
collapsed) in a set. Near: MinHash signatures (:mod:`.minhash`) in an LSH index whose bands and
rows are chosen for recall (a pair at exactly ``threshold`` becomes a candidate with probability
>= 0.99); every member of every colliding bucket is a candidate, and a candidate is confirmed by
the exact Jaccard similarity of the two shingle sets, so precision does not depend on the bands.
Before that, a candidate whose signature agrees with the other's on too few slots (at most
``threshold - 0.25`` of them, 55% at 0.8; :func:`prefilter_slots`) is rejected: the loose bands
make many candidates far below the threshold, and a pair at the threshold falls that low with
probability under 1e-9, so the prefilter saves exact comparisons, not recall.
Every document is indexed, duplicates included, with the cluster it joined (union-find): a
document close to a dropped duplicate joins that duplicate's cluster, so a near-duplicate chain
collapses to its first member. Memory grows with the number of documents reaching the stage:
a dict entry per band, ``4 x numPerm`` bytes of signature and 4 bytes per distinct shingle.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Sequence

import numpy as np

from kubetune_workloads.dataprep.minhash import MinHasher, recall_bands

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
        return self.seen_digest(normalized_digest(text))

    def seen_digest(self, digest: int) -> bool:
        """Whether ``digest`` was met before (and remember it)."""
        if digest in self._digests:
            return True
        self._digests.add(digest)
        return False


# A prefiltered candidate at or above the threshold is lost with at most this probability.
PREFILTER_MISS = 1e-9
PREFILTER_MARGIN = 0.25  # never require more than (threshold - this) of the slots to agree


def prefilter_slots(threshold: float, num_perm: int, miss: float = PREFILTER_MISS) -> int:
    """The fewest equal MinHash slots (of ``num_perm``) a candidate needs before its exact
    Jaccard similarity is computed: at most ``(threshold - 0.25) * num_perm`` (about 55% of
    the slots at 0.8), and low enough that a pair at the threshold, whose equal slots follow
    Binomial(num_perm, threshold), falls below it with probability under ``miss`` (with 16
    permutations the estimate is noisy, so far fewer slots are asked for)."""
    cap = max(0, math.ceil((threshold - PREFILTER_MARGIN) * num_perm - 1e-9))
    below = 0.0  # P(X < k) for X ~ Binomial(num_perm, threshold)
    for k in range(cap + 1):
        if below + _binomial(num_perm, k, threshold) >= miss or k == cap:
            return k
        below += _binomial(num_perm, k, threshold)
    return cap


def _binomial(n: int, k: int, p: float) -> float:
    """P(X = k) for X ~ Binomial(n, p), in log space (no overflow at 1024 permutations)."""
    if p >= 1.0:
        return 1.0 if k == n else 0.0
    log_comb = math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)
    return math.exp(log_comb + k * math.log(p) + (n - k) * math.log1p(-p))


class NearDeduper:
    """MinHash LSH index over every document seen, with exact-Jaccard confirmation."""

    def __init__(
        self, threshold: float = 0.8, num_perm: int = 128, ngram: int = 5, seed: int = 1
    ) -> None:
        self.threshold = threshold
        self.hasher = MinHasher(num_perm=num_perm, ngram=ngram, seed=seed)
        self.bands, self.rows = recall_bands(threshold, num_perm)
        rng = np.random.default_rng(seed + 1)
        self._band_mult = rng.integers(1, 2**63, size=self.rows, dtype=np.uint64) | np.uint64(1)
        # band key -> one document index, or a list of them once the bucket has several.
        self._tables: list[dict[int, int | list[int]]] = [{} for _ in range(self.bands)]
        self._sigs = np.empty((1024, num_perm), dtype=np.uint32)
        self._sets: list[np.ndarray] = []
        self._parent: list[int] = []
        # Candidates sharing fewer signature slots are rejected without the exact Jaccard.
        self._prefilter = prefilter_slots(threshold, num_perm)

    def __len__(self) -> int:
        return len(self._parent)

    def sketch(self, texts: Sequence[str]) -> tuple[np.ndarray, list[np.ndarray]]:
        """Signatures and shingle sets of ``texts`` (parallel workers compute these)."""
        return self.hasher.sketches(texts)

    def duplicates(self, texts: Sequence[str]) -> list[bool]:
        """For each text in order: True when it nearly duplicates an earlier text.

        Every text is added to the index (also for later texts of the same batch).
        """
        return self.check(*self.sketch(texts))

    def check(self, sigs: np.ndarray, sets: Sequence[np.ndarray]) -> list[bool]:
        """:meth:`duplicates` from precomputed :meth:`sketch` output."""
        if len(sets) == 0:
            return []
        used = sigs[:, : self.bands * self.rows].astype(np.uint64)
        banded = used.reshape(len(sets), self.bands, self.rows)
        with np.errstate(over="ignore"):
            keys = (banded * self._band_mult[None, None, :]).sum(axis=2, dtype=np.uint64)
        return [self._check_and_add(sigs[i], sets[i], row) for i, row in enumerate(keys.tolist())]

    def cluster(self, index: int) -> int:
        """The first document of the cluster of document ``index`` (in arrival order)."""
        parent = self._parent
        root = index
        while parent[root] != root:
            root = parent[root]
        while parent[index] != root:
            parent[index], index = root, parent[index]
        return root

    def _similar(self, other: int, sig: np.ndarray, shingles: np.ndarray) -> bool:
        if np.count_nonzero(self._sigs[other] == sig) < self._prefilter:
            return False
        known = self._sets[other]
        common = np.intersect1d(known, shingles, assume_unique=True).size
        union = known.size + shingles.size - common
        return union > 0 and common >= self.threshold * union

    def _check_and_add(self, sig: np.ndarray, shingles: np.ndarray, keys: list[int]) -> bool:
        index = len(self._parent)
        match = -1
        checked: set[int] = set()
        for table, key in zip(self._tables, keys, strict=True):
            bucket = table.get(key)
            if bucket is None:
                table[key] = index
                continue
            if isinstance(bucket, list):
                members = bucket
                bucket.append(index)
            else:
                members = [bucket]
                table[key] = [bucket, index]
            if match >= 0:
                continue
            for other in members:
                if other == index or other in checked:
                    continue
                checked.add(other)
                if self._similar(other, sig, shingles):
                    match = other
                    break
        if index == len(self._sigs):
            self._sigs = np.concatenate([self._sigs, np.empty_like(self._sigs)])
        self._sigs[index] = sig
        self._sets.append(shingles)
        self._parent.append(self.cluster(match) if match >= 0 else index)
        return match >= 0
