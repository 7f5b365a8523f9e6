"""Dataprep throughput: the full pipeline and its MinHash stage vs a naive datasketch baseline.

Generates synthetic ~1 KB documents (10% near-duplicates of earlier ones, a little PII and
markup), then measures in this process:

- **datatrove** (the baseline of the ratio): the same documents through the stages both have,
  in datatrove with one task: its JsonlReader, GopherQualityFilter, PIIFormatter and JsonlWriter,
  then its 4-stage MinHash dedup and a JsonlWriter;
- **full pipeline**: ``kubetune_workloads.dataprep.run`` on a JSONL file of all documents
  (read, clean, quality, offensive filter, PII, exact + near dedup, split, write, version), in
  1 process and with 2 datatrove map tasks, alternating, ``--repeats`` times each, after a
  warm-up of both (so lazy imports, datatrove's included, are in no timed run); each run prints
  its wall time, phases (pass 1, pass 2) and CPU (parent, each task); the speed-up is reported
  on the best runs and on the medians, and the outputs are compared byte for byte; with the
  CPU of every process of a run (``getrusage`` of the children too), ``speedup_cpu_ceiling`` =
  1-process CPU / (2-process CPU / 2): what 2 otherwise idle cores would give at best;
- **MinHash stage**: :class:`NearDeduper` alone (vectorized signatures + LSH);
- **baseline**: pandas ``read_json(lines=True)``, then per document a datasketch ``MinHash``
  updated shingle by shingle and a ``MinHashLSH`` query + insert (the README usage). It runs on
  the first ``--baseline-docs`` documents; its docs/s is a rate, so the sizes need not match.

Peak RSS of the full pipeline is measured in fresh subprocesses at N/2 and N documents, to show
that memory grows only with the dedup index. The last line is one JSON object (see
docs/architecture.md, "Benchmarks"); ``ratio`` = full-pipeline docs/s (1 process) / datatrove
docs/s (1 task), goal 1.0, on the best 1-process run; ``speedup_1_to_2_processes`` (best
1-process wall time / best 2-process wall time) has goal 1.7 on 2 cores. On a shared machine
the 2-process runs suffer most from other load: ``load_average`` is in the JSON.

    python bench/dataprep_throughput.py [--quick] [--docs 200000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

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


def run_pipeline(corpus: Path, out: Path, tasks: int = 1) -> float:
    """Seconds for the full dataprep step over ``corpus`` with ``tasks`` processes."""
    os.environ["KUBETUNE_DATAPREP_TASKS"] = str(tasks)
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


class _Words:
    """A datatrove word tokenizer: ``\\w+`` words (its English default needs spaCy)."""

    def __new__(cls) -> Any:
        from datatrove.utils.word_tokenizers import WordTokenizer

        class Words(WordTokenizer):
            def word_tokenize(self, text: str) -> list[str]:
                return re.findall(r"\w+", text)

            def sent_tokenize(self, text: str) -> list[str]:
                return [s for s in re.split(r"(?<=[.!?])\s+", text) if s]

            def span_tokenize(self, text: str) -> list[tuple[int, int]]:
                return [m.span() for m in re.finditer(r"[^.!?]+[.!?]*", text)]

        return Words()


def run_datatrove(corpus: Path, work: Path) -> tuple[float, int]:
    """The same stages in datatrove, one task: JsonlReader -> Gopher quality -> PII (emails,
    IPs) -> JsonlWriter, then its multi-stage MinHash (signatures, buckets, clusters, filter) at
    the same shingle size and FineWeb's 14 x 8 buckets -> JsonlWriter. (seconds, docs out)"""
    import datatrove.utils.hashes.xxhash as dt_xxhash
    import xxhash
    from datatrove.executor.local import LocalPipelineExecutor
    from datatrove.pipeline.dedup.minhash import (
        MinhashConfig,
        MinhashDedupBuckets,
        MinhashDedupCluster,
        MinhashDedupFilter,
        MinhashDedupSignature,
    )
    from datatrove.pipeline.filters import GopherQualityFilter
    from datatrove.pipeline.formatters import PIIFormatter
    from datatrove.pipeline.readers import JsonlReader
    from datatrove.pipeline.writers import JsonlWriter
    from loguru import logger

    # datatrove pins xxhash<4 (str input); this venv has 4.x: encode first (same hash).
    dt_xxhash.xxhash64 = lambda data: xxhash.xxh64_intdigest(
        data.encode() if isinstance(data, str) else data
    )
    logger.remove()
    words = _Words()
    config = MinhashConfig(n_grams=NGRAM)
    folder = work / "datatrove"
    filtered, sigs, buckets, remove, final = (
        str(folder / n) for n in ("filtered", "sigs", "buckets", "remove", "out")
    )
    stages: list[list[Any]] = [
        [
            JsonlReader(str(corpus.parent), glob_pattern=corpus.name),
            GopherQualityFilter(min_stop_words=None, min_doc_words=20, language=words),
            PIIFormatter(),
            JsonlWriter(filtered),
        ],
        [JsonlReader(filtered), MinhashDedupSignature(sigs, config=config, language=words)],
        [MinhashDedupBuckets(sigs, buckets, config=config)],
        [MinhashDedupCluster(buckets, remove, config=config)],
        [JsonlReader(filtered), MinhashDedupFilter(remove), JsonlWriter(final)],
    ]
    start = time.perf_counter()
    for i, pipeline in enumerate(stages):
        tasks = config.num_buckets if i == 2 else 1
        LocalPipelineExecutor(
            pipeline, tasks=tasks, workers=1, logging_dir=str(folder / f"logs{i}")
        ).run()
    elapsed = time.perf_counter() - start
    out = 0
    for path in Path(final).glob("*.jsonl*"):
        import gzip

        with gzip.open(path, "rt") if path.suffix == ".gz" else path.open() as handle:
            out += sum(1 for _ in handle)
    return elapsed, out


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


def timed_run(corpus: Path, out: Path, tasks: int) -> dict[str, Any]:
    """One full pipeline run: wall seconds, the parent's CPU, each map task's CPU, phases."""
    from kubetune_workloads.dataprep import engine

    shutil.rmtree(out, ignore_errors=True)
    engine.LAST_TASK_CPU.clear()
    cpu, children = time.process_time(), _children_cpu()
    wall = run_pipeline(corpus, out, tasks)
    time.sleep(0.2)  # let the language-detection helper be reaped: its CPU counts too
    return {
        "wall": wall,
        "cpu_parent": time.process_time() - cpu,
        "cpu_tasks": list(engine.LAST_TASK_CPU),
        # Every process of the run: parent, map tasks, datatrove's manager, helpers.
        "cpu_total": time.process_time() - cpu + _children_cpu() - children,
        **engine.LAST_PHASE_SECONDS,
    }


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def same_artifact(a: Path, b: Path) -> bool:
    names = ("train.jsonl", "validation.jsonl", "stats.json", "dataset.json", "README.md")
    return all((a / n).read_bytes() == (b / n).read_bytes() for n in names)


def scaling(docs: list[str], corpus: Path, work: Path, repeats: int) -> dict[str, Any]:
    """The full pipeline in 1 and in 2 processes, alternating, ``repeats`` times each (both
    warmed up first, so lazy imports such as datatrove's are in neither timed run)."""
    warm = write_corpus(docs[:300], work / "warm.jsonl")
    for tasks in (1, 2):
        run_pipeline(warm, work / f"warm{tasks}", tasks)
    runs: dict[int, list[dict[str, Any]]] = {1: [], 2: []}
    identical = True
    for attempt in range(repeats):
        for tasks in (1, 2):
            run = timed_run(corpus, work / f"out{tasks}", tasks)
            runs[tasks].append(run)
            phases = ", ".join(f"{k} {run[k]:.2f}s" for k in ("pass1", "pass2"))
            print(f"  run {attempt + 1}, {tasks} process(es): {len(docs) / run['wall']:,.0f} "
                  f"docs/s ({run['wall']:.2f}s: {phases}); CPU parent {run['cpu_parent']:.2f}s"
                  f", tasks {[round(t, 2) for t in run['cpu_tasks']]}, all processes "
                  f"{run['cpu_total']:.2f}s; load {os.getloadavg()[0]:.1f}")  # fmt: skip
        identical = identical and same_artifact(work / "out1", work / "out2")
    walls = {t: sorted(r["wall"] for r in runs[t]) for t in runs}
    best = {t: walls[t][0] for t in walls}
    median = {t: statistics.median(walls[t]) for t in walls}
    cpu = {t: statistics.median(r["cpu_total"] for r in runs[t]) for t in runs}
    return {
        "runs": runs,
        "best": best,
        "median": median,
        "speedup_best": best[1] / best[2],
        "speedup_median": median[1] / median[2],
        # The ceiling on 2 otherwise idle cores: all the CPU of a 2-process run, perfectly
        # packed onto both cores, against the 1-process run's CPU (medians).
        "cpu_total_median": cpu,
        "speedup_cpu_ceiling": cpu[1] / (cpu[2] / 2),
        "identical": identical,
    }


def baselines(docs: list[str], corpus: Path, limit: int) -> dict[str, float]:
    """The naive pandas + datasketch baseline and the MinHash stage alone (docs/s)."""
    base_s, base_docs, base_dups = run_baseline(corpus, limit)
    baseline_rate = base_docs / base_s
    print(f"baseline (pandas + datasketch per doc): {baseline_rate:,.0f} docs/s "
          f"on {base_docs} docs, {base_dups} dups")  # fmt: skip
    mh_s, mh_dups = run_minhash(docs)
    minhash_rate = len(docs) / mh_s
    print(f"minhash stage (vectorized + LSH): {minhash_rate:,.0f} docs/s, {mh_dups} dups, "
          f"{minhash_rate / baseline_rate:.1f}x baseline")  # fmt: skip
    return {"naive": baseline_rate, "minhash": minhash_rate, "naive_docs": base_docs}


def print_scaling(n: int, scale: dict[str, Any], stats: dict[str, Any]) -> None:
    best, median, cpu = scale["best"], scale["median"], scale["cpu_total_median"]
    print(f"full pipeline: 1 process best {n / best[1]:,.0f} docs/s (median "
          f"{n / median[1]:,.0f}), 2 processes best {n / best[2]:,.0f} docs/s (median "
          f"{n / median[2]:,.0f}); speed-up {scale['speedup_best']:.2f}x best, "
          f"{scale['speedup_median']:.2f}x median; CPU of all processes {cpu[1]:.2f}s vs "
          f"{cpu[2]:.2f}s: ceiling on 2 idle cores {scale['speedup_cpu_ceiling']:.2f}x; "
          f"identical output: {scale['identical']}; "
          f"{stats['records']['out']} records out, dropped {stats['dropped']}")  # fmt: skip


def memory(corpus: Path, n: int, work: Path) -> dict[str, float]:
    """Peak RSS (MiB) of fresh processes over half and all of the documents."""
    half = peak_rss_mib(corpus, n // 2, work)
    full = peak_rss_mib(corpus, n, work)
    # Per document: signature, 21 band dict entries, ~170 shingles x 4 bytes, list slots.
    index_bytes = (4 * NUM_PERM + 21 * 100 + 4 * 170 + 200) * (n - n // 2) / 2**20
    print(f"peak RSS: {half:.0f} MiB at {n // 2} docs, {full:.0f} MiB at {n} docs "
          f"(+{full - half:.0f} MiB; dedup index estimate +{index_bytes:.0f} MiB)")  # fmt: skip
    return {str(n // 2): round(half, 1), str(n): round(full, 1)}


def summary(
    n: int, scale: dict[str, Any], dt_rate: float, base: dict[str, float], rss: dict[str, float]
) -> dict[str, Any]:
    """The last line's JSON object (docs/architecture.md, "Benchmarks")."""
    full_rate, two_rate = n / scale["best"][1], n / scale["best"][2]
    return {
        "bench": "dataprep_throughput",
        "metric": "full_pipeline_docs_per_second_vs_datatrove",
        "value": round(full_rate, 1),
        "baseline": round(dt_rate, 1),
        "ratio": round(full_rate / dt_rate, 2),
        "goal": 1.0,
        "unit": "docs/s",
        "two_process_docs_per_second": round(two_rate, 1),
        "speedup_1_to_2_processes": round(scale["speedup_best"], 2),
        "speedup_1_to_2_median": round(scale["speedup_median"], 2),
        "speedup_cpu_ceiling": round(scale["speedup_cpu_ceiling"], 2),
        "cpu_seconds_all_processes": {
            str(t): round(c, 2) for t, c in scale["cpu_total_median"].items()
        },
        "wall_seconds": {str(t): [round(r["wall"], 2) for r in scale["runs"][t]] for t in (1, 2)},
        "load_average": round(os.getloadavg()[0], 1),
        "speedup_goal": 1.7,
        "identical_output_1_vs_2": scale["identical"],
        "cpus": len(os.sched_getaffinity(0)),
        "naive_baseline_docs_per_second": round(base["naive"], 1),
        "naive_ratio": round(full_rate / base["naive"], 2),
        "minhash_docs_per_second": round(base["minhash"], 1),
        "minhash_ratio": round(base["minhash"] / base["naive"], 2),
        "docs": n,
        "baseline_docs": int(base["naive_docs"]),
        "peak_rss_mib": rss,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, under a minute")
    parser.add_argument("--docs", type=int, default=None, help="documents (default 200000)")
    parser.add_argument("--baseline-docs", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=3, help="runs of 1 and of 2 processes")
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
        base = baselines(docs, corpus, baseline_n)
        print(f"full pipeline, 1 and 2 processes (datatrove tasks), {args.repeats} runs each:")
        scale = scaling(docs, corpus, work, args.repeats)
        print_scaling(n, scale, json.loads((work / "out1" / "stats.json").read_text()))
        dt_s, dt_out = run_datatrove(corpus, work)
        dt_rate = n / dt_s
        print(f"datatrove (reader, gopher, PII, 4-stage minhash, writer; 1 task): "
              f"{dt_rate:,.0f} docs/s ({dt_s:.1f}s), {dt_out} records out; "
              f"kubetune 1 process {n / scale['best'][1] / dt_rate:.2f}x")  # fmt: skip
        del docs
        rss = memory(corpus, n, work)
    print(json.dumps(summary(n, scale, dt_rate, base, rss)))


if __name__ == "__main__":
    main()
