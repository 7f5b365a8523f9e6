"""Dataprep throughput: the full pipeline and its MinHash stage vs a naive datasketch baseline.

Generates synthetic ~1 KB documents (10% near-duplicates of earlier ones, a little PII and
markup), then measures in this process:

- **full pipeline**: ``kubetune_workloads.dataprep.run`` on a JSONL file of all documents
  (read, clean, quality, offensive filter, PII, exact + near dedup, split, write, version);
- **MinHash stage**: :class:`NearDeduper` alone (vectorized signatures + LSH);
- **baseline**: pandas ``read_json(lines=True)``, then per document a datasketch ``MinHash``
  updated shingle by shingle and a ``MinHashLSH`` query + insert (the README usage). It runs on
  the first ``--baseline-docs`` documents; its docs/s is a rate, so the sizes need not match.

Peak RSS of the full pipeline is measured in fresh subprocesses at N/2 and N documents, to show
that memory grows only with the dedup index. The last line is one JSON object (see
ARCHITECTURE.md); ``ratio`` = full-pipeline docs/s / baseline docs/s (goal 3).

    python bench/dataprep_throughput.py [--quick] [--docs 200000]
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

NUM_PERM = 128
NGRAM = 5
THRESHOLD = 0.8


def generate(n: int, seed: int = 0) -> list[str]:
    """``n`` documents of about 1 KB; 10% are near-duplicates (2% of words changed)."""
    rng = random.Random(seed)
    vocab = ["".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 9)))
             for _ in range(20000)]  # fmt: skip
    cum = list(itertools.accumulate(1 / (i + 1) ** 0.8 for i in range(len(vocab))))
    docs: list[str] = []
    for i in range(n):
        if i > 10 and rng.random() < 0.1:
            words = docs[rng.randrange(i)].split(" ")
            for j in rng.sample(range(len(words)), max(1, len(words) // 50)):
                words[j] = rng.choice(vocab)
            docs.append(" ".join(words))
            continue
        sentences = []
        length = 0
        while length < 1000:
            words = rng.choices(vocab, cum_weights=cum, k=rng.randint(8, 20))
            sentence = " ".join(words).capitalize() + "."
            sentences.append(sentence)
            length += len(sentence) + 1
        if rng.random() < 0.05:
            sentences.append(f"Contact user{i}@example.com or +1 555 {i % 1000:03d} 4567.")
        if rng.random() < 0.05:
            sentences.insert(0, "<p>")
            sentences.append("</p>")
        docs.append(" ".join(sentences))
    return docs


def write_corpus(docs: list[str], path: Path) -> Path:
    with path.open("w", encoding="utf-8") as handle:
        for doc in docs:
            handle.write(json.dumps({"text": doc}) + "\n")
    return path


def run_pipeline(corpus: Path, out: Path) -> float:
    """Seconds for the full dataprep step over ``corpus``."""
    from kubetune.api.steps import DataprepStepSpec
    from kubetune_workloads.dataprep import run

    step = DataprepStepSpec.model_validate(
        {
            "producer": {"kind": "Dataset", "name": "bench", "namespace": "b", "runId": "r"},
            "outputUri": f"file://{out}",
            "spec": {
                "sources": [{"uri": f"file://{corpus}"}],
                "cleaning": {
                    "nearDedup": {"threshold": THRESHOLD, "numPerm": NUM_PERM, "ngram": NGRAM}
                },
            },
        }
    )
    start = time.perf_counter()
    result = run(step)
    elapsed = time.perf_counter() - start
    if not result.ok:
        raise SystemExit(f"pipeline failed: {result.reason}: {result.message}")
    return elapsed


def run_minhash(docs: list[str]) -> tuple[float, int]:
    from kubetune_workloads.dataprep.dedup import NearDeduper

    dedup = NearDeduper(THRESHOLD, NUM_PERM, NGRAM)
    start = time.perf_counter()
    dups = 0
    for i in range(0, len(docs), 512):
        dups += sum(dedup.duplicates(docs[i : i + 512]))
    return time.perf_counter() - start, dups


def run_baseline(corpus: Path, limit: int) -> tuple[float, int, int]:
    """pandas + per-document datasketch MinHash + LSH query/insert: (seconds, docs, dups)."""
    import pandas as pd
    from datasketch import MinHash, MinHashLSH

    start = time.perf_counter()
    frame = pd.read_json(corpus, lines=True, nrows=limit)
    lsh = MinHashLSH(threshold=THRESHOLD, num_perm=NUM_PERM)
    dups = 0
    for i, text in enumerate(frame["text"]):
        words = text.lower().split()
        shingles = {" ".join(words[j : j + NGRAM]) for j in range(max(1, len(words) - NGRAM + 1))}
        signature = MinHash(num_perm=NUM_PERM)
        for shingle in shingles:
            signature.update(shingle.encode("utf-8"))
        if lsh.query(signature):
            dups += 1
        else:
            lsh.insert(str(i), signature)
    return time.perf_counter() - start, len(frame), dups


def peak_rss_mib(corpus: Path, docs: int, workdir: Path) -> float:
    """Peak RSS (MiB) of a fresh process running the pipeline over the first ``docs`` docs."""
    part = workdir / f"part-{docs}.jsonl"
    with corpus.open() as src, part.open("w") as dst:
        for _ in range(docs):
            dst.write(src.readline())
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss over exec from the (large) parent.
    code = (
        "import sys; sys.path.insert(0, sys.argv[3]);"
        "from dataprep_throughput import run_pipeline; from pathlib import Path;"
        "run_pipeline(Path(sys.argv[1]), Path(sys.argv[2]));"
        "print([l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM')][0])"
    )
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            code,
            str(part),
            str(workdir / f"rss-{docs}"),
            str(Path(__file__).parent),
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    return int(out.stdout.strip().splitlines()[-1]) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, under a minute")
    parser.add_argument("--docs", type=int, default=None, help="documents (default 200000)")
    parser.add_argument("--baseline-docs", type=int, default=None)
    args = parser.parse_args()
    n = args.docs or (8000 if args.quick else 200_000)
    baseline_n = min(n, args.baseline_docs or (1500 if args.quick else 20_000))

    with tempfile.TemporaryDirectory(prefix="bench-dataprep-") as tmp:
        work = Path(tmp)
        t0 = time.perf_counter()
        docs = generate(n)
        corpus = write_corpus(docs, work / "corpus.jsonl")
        size_mb = corpus.stat().st_size / 1e6
        print(f"generated {n} docs ({size_mb:.0f} MB) in {time.perf_counter() - t0:.1f}s")

        base_s, base_docs, base_dups = run_baseline(corpus, baseline_n)
        baseline_rate = base_docs / base_s
        print(f"baseline (pandas + datasketch per doc): {baseline_rate:,.0f} docs/s "
              f"on {base_docs} docs, {base_dups} dups")  # fmt: skip

        mh_s, mh_dups = run_minhash(docs)
        minhash_rate = n / mh_s
        print(f"minhash stage (vectorized + LSH): {minhash_rate:,.0f} docs/s, {mh_dups} dups, "
              f"{minhash_rate / baseline_rate:.1f}x baseline")  # fmt: skip

        full_s = run_pipeline(corpus, work / "out")
        stats = json.loads((work / "out" / "stats.json").read_text())
        full_rate = n / full_s
        print(f"full pipeline: {full_rate:,.0f} docs/s ({full_s:.1f}s), "
              f"{stats['records']['out']} records out, dropped {stats['dropped']}")  # fmt: skip

        del docs
        half = peak_rss_mib(corpus, n // 2, work)
        full = peak_rss_mib(corpus, n, work)
        index_bytes = (4 * NUM_PERM + 9 * 100 + 100) * (n - n // 2) / 2**20
        print(f"peak RSS: {half:.0f} MiB at {n // 2} docs, {full:.0f} MiB at {n} docs "
              f"(+{full - half:.0f} MiB; dedup index estimate +{index_bytes:.0f} MiB)")  # fmt: skip

    print(
        json.dumps(
            {
                "bench": "dataprep_throughput",
                "metric": "full_pipeline_docs_per_second",
                "value": round(full_rate, 1),
                "baseline": round(baseline_rate, 1),
                "ratio": round(full_rate / baseline_rate, 2),
                "goal": 3.0,
                "unit": "docs/s",
                "minhash_docs_per_second": round(minhash_rate, 1),
                "minhash_ratio": round(minhash_rate / baseline_rate, 2),
                "docs": n,
                "baseline_docs": base_docs,
                "peak_rss_mib": {str(n // 2): round(half, 1), str(n): round(full, 1)},
            }
        )
    )


if __name__ == "__main__":
    main()
