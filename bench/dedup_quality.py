"""Near-duplicate quality: recall and false positives at known true Jaccard similarity.

Builds pairs of documents whose true Jaccard similarity of word ``ngram`` shingle sets is known
exactly (a base document of random words and a copy with ``k`` words substituted far enough
apart that each substitution replaces ``ngram`` shingles), over several document lengths and
targets spread over 0.5...1.0, and measures in one run, at the same threshold:

- **kubetune**: :class:`NearDeduper` (recall-oriented bands, every bucket member a candidate,
  exact Jaccard confirmation);
- **exact**: exact Jaccard of the shingle sets (the reference: recall 1, no false positives);
- **datasketch**: ``MinHashLSH(threshold, num_perm)`` query (its own band choice, no
  confirmation), the usage of its README;
- **datatrove**: datatrove's MinHash (``MinhashDedupSignature`` shingling and signatures; a pair
  matches when one of its buckets is equal, which is what its bucket stage looks for), with the
  configuration FineWeb used (14 buckets x 8 hashes, 5-grams).

Recall is over pairs with J >= threshold, the false-positive rate over pairs with
J <= threshold - 0.1. The S-curve (share of pairs found per J bin) is printed for each method.
The last line is one JSON object; ``ratio`` = kubetune recall / the best peer recall (the
peers' false-positive rates are in ``peers``; ``kubetune-lsh`` is the candidate stage alone,
before exact confirmation: the S-curve of the chosen bands).

    python bench/dedup_quality.py [--quick] [--threshold 0.8] [--ngram 5]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "images"))

NUM_PERM = 128
RECALL_GOAL = 0.95
FPR_GOAL = 0.01
LENGTHS = (40, 120, 400)


def shingles(text: str, n: int) -> set[str]:
    words = text.split()
    return {" ".join(words[i : i + n]) for i in range(max(1, len(words) - n + 1))}


def jaccard(a: set[str], b: set[str]) -> float:
    return len(a & b) / len(a | b)


def word(rng: random.Random) -> str:
    """A random lower-case word (letters only: datatrove's normalisation folds digits)."""
    return "".join(rng.choices("abcdefghijklmnopqrstuvwxyz", k=rng.randint(4, 10)))


def make_pairs(per_length: int, ngram: int, seed: int = 0) -> list[tuple[str, str, float]]:
    """Pairs (a, b, exact Jaccard) with targets uniform over [0.5, 1.0]."""
    rng = random.Random(seed)
    pairs = []
    for length in LENGTHS:
        count = length - ngram + 1
        for _ in range(per_length):
            words = [word(rng) for _ in range(length)]
            target = rng.uniform(0.5, 1.0)
            # k substitutions >= ngram apart: common = S - k*n, union = S + k*n.
            k = round(count * (1 - target) / (ngram * (1 + target)))
            k = min(k, max(0, (length - 1) // ngram))
            start = rng.randrange(ngram)
            slots = list(range(start, length, ngram))
            changed = list(words)
            for pos in sorted(rng.sample(slots, min(k, len(slots)))):
                changed[pos] = word(rng)
            a, b = " ".join(words), " ".join(changed)
            pairs.append((a, b, jaccard(shingles(a, ngram), shingles(b, ngram))))
    return pairs


def run_kubetune(pairs: list[tuple[str, str, float]], threshold: float, ngram: int) -> list[bool]:
    from kubetune_workloads.dataprep.dedup import NearDeduper

    dedup = NearDeduper(threshold, NUM_PERM, ngram, seed=42)
    found = []
    for a, b, _ in pairs:  # every pair in the same index: unrelated pairs must not interfere
        found.append(dedup.duplicates([a, b])[1])
    return found


def run_kubetune_lsh(
    pairs: list[tuple[str, str, float]], threshold: float, ngram: int
) -> list[bool]:
    """Whether the pair shares an LSH band (candidate), before confirmation."""
    import numpy as np
    from kubetune_workloads.dataprep.dedup import NearDeduper

    dedup = NearDeduper(threshold, NUM_PERM, ngram, seed=42)
    sigs = dedup.hasher.signatures([t for a, b, _ in pairs for t in (a, b)])
    width = dedup.bands * dedup.rows
    bands = sigs[:, :width].reshape(len(pairs), 2, dedup.bands, dedup.rows)
    same = np.all(bands[:, 0] == bands[:, 1], axis=2)
    return [bool(x) for x in np.any(same, axis=1)]


def run_exact(pairs: list[tuple[str, str, float]], threshold: float, ngram: int) -> list[bool]:
    return [jaccard(shingles(a, ngram), shingles(b, ngram)) >= threshold for a, b, _ in pairs]


def run_datasketch(pairs: list[tuple[str, str, float]], threshold: float, ngram: int) -> list[bool]:
    from datasketch import MinHash, MinHashLSH

    lsh = MinHashLSH(threshold=threshold, num_perm=NUM_PERM)

    def sketch(text: str) -> MinHash:
        signature = MinHash(num_perm=NUM_PERM)
        for shingle in shingles(text, ngram):
            signature.update(shingle.encode())
        return signature

    found = []
    for i, (a, b, _) in enumerate(pairs):
        lsh.insert(f"a{i}", sketch(a))
        found.append(f"a{i}" in lsh.query(sketch(b)))
    return found


def run_datatrove(pairs: list[tuple[str, str, float]], ngram: int, tmp: str) -> list[bool]:
    from datatrove.pipeline.dedup.minhash import MinhashConfig, MinhashDedupSignature
    from datatrove.utils.hashing import HashConfig
    from datatrove.utils.word_tokenizers import WordTokenizer

    class Split(WordTokenizer):
        """Whitespace words (its English default needs spaCy; these texts are plain words)."""

        def word_tokenize(self, text: str) -> list[str]:
            return text.split()

        def sent_tokenize(self, text: str) -> list[str]:
            return [text]

        def span_tokenize(self, text: str) -> list[tuple[int, int]]:
            return [(0, len(text))]

    # sha1 shingle hashes: datatrove pins xxhash<4 for its xxhash option (this venv has 4.x).
    config = MinhashConfig(n_grams=ngram, hash_config=HashConfig(hash_fc="sha1"))
    step = MinhashDedupSignature(tmp, config=config, language=Split())
    found = []
    for a, b, _ in pairs:
        sig_a = step.get_signature(step.get_shingles(a))
        sig_b = step.get_signature(step.get_shingles(b))
        found.append(any(x == y for x, y in zip(sig_a, sig_b, strict=True)))
    return found


def score(
    pairs: list[tuple[str, str, float]], found: list[bool], threshold: float
) -> dict[str, float]:
    above = [f for (_, _, j), f in zip(pairs, found, strict=True) if j >= threshold]
    below = [f for (_, _, j), f in zip(pairs, found, strict=True) if j <= threshold - 0.1 + 1e-9]
    return {
        "recall": sum(above) / max(1, len(above)),
        "fpr": sum(below) / max(1, len(below)),
        "pairs_above": len(above),
        "pairs_below": len(below),
    }


def s_curve(pairs: list[tuple[str, str, float]], found: list[bool]) -> dict[str, float]:
    bins: dict[str, list[bool]] = defaultdict(list)
    for (_, _, j), f in zip(pairs, found, strict=True):
        low = min(int(j * 20), 19) / 20  # 0.05-wide bins, 1.0 in the last
        bins[f"{low:.2f}"].append(f)
    return {k: round(sum(v) / len(v), 3) for k, v in sorted(bins.items()) if k >= "0.50"}


def measure(
    pairs: list[tuple[str, str, float]], threshold: float, ngram: int
) -> dict[str, dict[str, Any]]:
    """Recall, false-positive rate and S-curve of kubetune and its peers over ``pairs``."""
    import tempfile

    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-dedup-") as tmp:
        runners = {
            "kubetune": lambda: run_kubetune(pairs, threshold, ngram),
            "kubetune-lsh": lambda: run_kubetune_lsh(pairs, threshold, ngram),
            "exact": lambda: run_exact(pairs, threshold, ngram),
            "datasketch": lambda: run_datasketch(pairs, threshold, ngram),
            "datatrove": lambda: run_datatrove(pairs, ngram, tmp),
        }
        for name, runner in runners.items():
            start = time.perf_counter()
            found = runner()
            elapsed = time.perf_counter() - start
            results[name] = {**score(pairs, found, threshold), "curve": s_curve(pairs, found)}
            r = results[name]
            print(f"{name:>12}: recall(J>={threshold}) {r['recall']:.4f}  "
                  f"FPR(J<={threshold - 0.1:.1f}) {r['fpr']:.4f}  {elapsed:.1f}s")  # fmt: skip
    print("S-curve (share of pairs found per true-Jaccard bin):")
    bins = list(results["kubetune"]["curve"])
    print(f"{'J bin':>12} " + " ".join(f"{b:>6}" for b in bins))
    for name, r in results.items():
        curve = r["curve"]
        print(f"{name:>12} " + " ".join(f"{curve.get(b, 0):>6.3f}" for b in bins))
    return results


def summary(results: dict[str, dict[str, Any]], threshold: float) -> dict[str, Any]:
    """Whether the goals are met, and the last line's JSON object."""
    ours = results["kubetune"]
    peers = [results["datasketch"], results["datatrove"]]
    best = max(float(p["recall"]) for p in peers)
    met = (
        float(ours["recall"]) >= RECALL_GOAL
        and float(ours["fpr"]) <= FPR_GOAL
        and all(ours["recall"] >= p["recall"] and ours["fpr"] <= p["fpr"] for p in peers)
    )
    print(f"goals (recall >= {RECALL_GOAL}, FPR <= {FPR_GOAL}, not below either peer): "
          f"{'met' if met else 'NOT met'}")  # fmt: skip
    return {
        "bench": "dedup_quality",
        "metric": f"near_dup_recall_at_j_ge_{threshold}",
        "value": round(float(ours["recall"]), 4),
        "baseline": round(best, 4),
        "ratio": round(float(ours["recall"]) / best, 3) if best else None,
        "goal": RECALL_GOAL,
        "unit": "recall",
        "fpr": round(float(ours["fpr"]), 4),
        "fpr_goal": FPR_GOAL,
        "goals_met": met,
        "peers": {
            k: {"recall": round(float(v["recall"]), 4), "fpr": round(float(v["fpr"]), 4)}
            for k, v in results.items()
            if k not in ("kubetune", "kubetune-lsh")
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer pairs, under a minute")
    parser.add_argument("--pairs", type=int, default=None, help="pairs per document length")
    parser.add_argument("--threshold", type=float, default=0.8)
    parser.add_argument("--ngram", type=int, default=5)
    args = parser.parse_args()
    per_length = args.pairs or (400 if args.quick else 2000)
    threshold, ngram = args.threshold, args.ngram

    pairs = make_pairs(per_length, ngram)
    from kubetune_workloads.dataprep.minhash import recall_bands

    bands, rows = recall_bands(threshold, NUM_PERM)
    print(f"kubetune bands x rows for {threshold}/{NUM_PERM}: {bands} x {rows}")
    print(f"{len(pairs)} pairs, lengths {LENGTHS} words, {ngram}-gram shingles, "
          f"threshold {threshold}")  # fmt: skip
    results = measure(pairs, threshold, ngram)
    print(json.dumps(summary(results, threshold)))


if __name__ == "__main__":
    main()
