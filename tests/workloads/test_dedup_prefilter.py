"""The near-duplicate prefilter costs no recall: a pair at the threshold, whose equal MinHash
slots follow Binomial(numPerm, threshold), falls below the required count with probability
under 1e-9 for every allowed numPerm, and the default (0.8, 128) keeps the documented 55%
floor. The tail is computed here independently, in exact rational arithmetic."""

from __future__ import annotations

from fractions import Fraction

import pytest
from kubetune_workloads.dataprep.dedup import NearDeduper, prefilter_slots


def tail_below(k: int, n: int, p: Fraction) -> Fraction:
    """P(X < k) for X ~ Binomial(n, p), exactly."""
    from math import comb

    return sum((comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(k)), Fraction(0))


@pytest.mark.parametrize("num_perm", [16, 32, 64, 128, 256])
@pytest.mark.parametrize("threshold", ["0.3", "0.5", "0.8", "0.9", "0.95"])
def test_a_pair_at_the_threshold_passes_the_prefilter(num_perm: int, threshold: str) -> None:
    t = Fraction(threshold)
    slots = prefilter_slots(float(t), num_perm)
    assert tail_below(slots, num_perm, t) < Fraction(1, 10**9)
    assert slots <= (t - Fraction(1, 4)) * num_perm + 1  # never stricter than 55% at 0.8


def test_the_default_floor_is_55_percent_of_128_slots() -> None:
    assert prefilter_slots(0.8, 128) == 71  # 0.55 * 128 = 70.4: 71 equal slots or more
    assert prefilter_slots(0.8, 16) == 2  # 16 slots are too noisy for 55%: ask for far fewer


def jaccard_3grams(a: list[str], b: list[str]) -> float:
    grams = [{tuple(words[i : i + 3]) for i in range(len(words) - 2)} for words in (a, b)]
    return len(grams[0] & grams[1]) / len(grams[0] | grams[1])


def test_near_duplicates_just_above_the_threshold_are_found_with_16_permutations() -> None:
    words = [f"w{i}" for i in range(60)]
    found = 0
    for seed in range(200):
        base = words[seed % 60 :] + words[: seed % 60]
        variant = [*base[:-6], "a", "b", "c", "d", "e", "f"]
        assert jaccard_3grams(base, variant) == 52 / 64  # 0.8125
        flags = NearDeduper(0.8, 16, 3, seed=seed).duplicates([" ".join(base), " ".join(variant)])
        found += flags[1]
    # Seeded, so exact: all 200 (the fixed 55% floor, 9 of 16 slots, lost 2 of them).
    assert found == 200
