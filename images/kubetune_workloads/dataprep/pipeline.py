"""The two passes of data preparation.

Pass 1 streams every source through schema mapping and the filters (:mod:`.filters`) in
batches and spools the survivors to a temporary file (pickled batches), so memory holds one
batch plus what dedup must remember. It is a map (the per-record stages, which any number of
tasks run on disjoint chunks of the input: :func:`map_task`) and a reduce (the order-dependent
stages, over the mapped records merged back into input order); with one task both run
interleaved in this process, with several the map runs as datatrove tasks (:mod:`.engine`).

Pass 2 reads the spool back: rebalancing (which needs the group counts of pass 1), source
weights, tokenizer training and token bounds, and the deterministic train/validation split
(by exact-duplicate group: :meth:`Record.split_key`).
"""

from __future__ import annotations

import itertools
import math
import pickle
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from kubetune.api.dataset import DatasetSpec

from kubetune_workloads import storage
from kubetune_workloads.dataprep import balance as balancing
from kubetune_workloads.dataprep import engine
from kubetune_workloads.dataprep import tokens as tok
from kubetune_workloads.dataprep.curation import detect_language
from kubetune_workloads.dataprep.filters import Filters, Mapped
from kubetune_workloads.dataprep.formats import Malformed, Repaired
from kubetune_workloads.dataprep.output import SplitWriter
from kubetune_workloads.dataprep.records import Record, fraction
from kubetune_workloads.dataprep.schema import SchemaMapper
from kubetune_workloads.dataprep.sources import display_uri, iter_source
from kubetune_workloads.dataprep.stats import StageStats
from kubetune_workloads.errors import WorkloadError
from kubetune_workloads.progress import ProgressReporter

BATCH_SIZE = 512
CHUNK = 512  # input items per task assignment (tasks take chunks round robin)
LANGUAGE_SAMPLE = 20
TOKENIZER_DIR = "tokenizer"


@dataclass
class Outcome:
    """What the two passes produced (for stats.json, the card and the step result)."""

    stats: StageStats
    filters: Filters
    read: int = 0
    malformed: int = 0
    sources: list[dict[str, Any]] = field(default_factory=list)
    splits: dict[str, int] = field(default_factory=dict)
    token_lengths: np.ndarray | None = None
    tokenizer: dict[str, Any] | None = None
    balance: dict[str, Any] | None = None
    languages: dict[str, Any] | None = None
    words: int = 0
    # The first de-duplicated records' texts, whose languages stats.json reports (detected in a
    # helper process while the reduce goes on when the map ran as several tasks).
    language_sample: list[str] = field(default_factory=list)
    language_future: Any = None

    @property
    def records(self) -> int:
        return sum(self.splits.values())

    @property
    def tokens(self) -> int | None:
        return None if self.token_lengths is None else int(self.token_lengths.sum())


def prepare(
    spec: DatasetSpec,
    out: Path,
    reporter: ProgressReporter,
    tokenizer_uri: str | None = None,
    tasks: int | None = None,
    shards: Path | None = None,
) -> Outcome:
    """Run both passes, writing the splits (and tokenizer) into ``out``.

    ``tasks`` > 1 runs the per-record stages in that many datatrove tasks (local processes,
    :mod:`.engine`); the output is identical whatever the number of tasks.
    """
    stats = StageStats()
    filters = Filters(spec, stats)
    outcome = Outcome(stats=stats, filters=filters)
    balancer = balancing.Balancer(spec.safety.balance) if spec.safety.balance else None
    with tempfile.TemporaryDirectory(prefix="dataprep-", dir=storage.cache_root()) as tmp:
        spool = Path(tmp) / "spool.jsonl"
        labels: list[str] = []
        n_tasks = tasks if tasks is not None else engine.default_tasks(spec)
        if n_tasks <= 1 and shards is None:
            _first_pass(spec, spool, outcome, balancer, labels, reporter)
        else:
            reporter.update(phase="Filtering", message=f"{n_tasks} tasks")
            folder = shards or Path(tmp) / "map"
            engine.run_map(spec, folder, n_tasks)  # skips the tasks already completed
            results = engine.read_results(folder, n_tasks)
            merged = engine.read_mapped(folder, n_tasks)
            _reduce(spec, spool, outcome, balancer, labels, results, merged)
        _check_errors(spec, outcome)
        _second_pass(spec, spool, out, outcome, labels, reporter, tokenizer_uri)
    return outcome


# --- pass 1 ---------------------------------------------------------------------------------


@dataclass
class TaskResult:
    """What one map task counted (merged by the reduce)."""

    stats: StageStats
    read: int = 0
    malformed: int = 0
    sources: list[Counter[str]] = field(default_factory=list)
    pii_counts: Counter[str] = field(default_factory=Counter)
    offensive_redactions: int = 0
    languages: Counter[str] = field(default_factory=Counter)
    cpu_seconds: float = 0.0


def owner(position: int, world: int) -> int:
    """The task that maps the input item at ``position`` (chunks of CHUNK items, round robin)."""
    return (position // CHUNK) % world


def map_task(
    spec: DatasetSpec,
    rank: int,
    world: int,
    sink: Callable[[list[tuple[int, Mapped]]], None],
    filters: Filters | None = None,
    progress: Callable[[int], None] | None = None,
) -> TaskResult:
    """Read every source, run the per-record stages on the items this task owns, and hand
    the survivors (with their input position) to ``sink`` a batch at a time."""
    if filters is None:
        filters = Filters(spec, StageStats(), index=False)
    stats = filters.stats
    result = TaskResult(stats=stats)
    meta_field = spec.safety.balance.field if spec.safety.balance else None
    position = -1
    for index, source in enumerate(spec.sources):
        mapper = SchemaMapper(spec.record_schema, source.fields, spec.role_mapping, meta_field)
        counts = Counter[str]()
        number = 0
        batch: list[Record] = []
        for item in iter_source(source):
            if isinstance(item, Repaired):
                if owner(position + 1, world) == rank:
                    stats.change("read", "encoding_repaired")
                continue
            position += 1
            number += 1
            if owner(position, world) != rank:
                continue
            result.read += 1
            counts["read"] += 1
            stats.enter("read")
            if isinstance(item, Malformed):
                result.malformed += 1
                counts["malformed"] += 1
                stats.drop("read", item.reason, item.example(), position)
                continue
            stats.keep("read")
            stats.enter("schema")
            record = mapper.map(item, f"{display_uri(source.uri)}#{number}", index)
            if isinstance(record, Malformed):
                result.malformed += 1
                counts["malformed"] += 1
                stats.drop("schema", record.reason, record.example(), position)
                continue
            stats.keep("schema")
            record.weight = source.weight
            record.position = position
            batch.append(record)
            if len(batch) >= BATCH_SIZE:
                sink([(m.record.position, m) for m in filters.map(batch)])
                batch = []
                if progress is not None:
                    progress(position + 1)
        sink([(m.record.position, m) for m in filters.map(batch)])
        result.sources.append(counts)
    result.pii_counts = filters.pii_counts
    result.offensive_redactions = filters.offensive_redactions
    result.languages = filters.languages
    return result


def _first_pass(
    spec: DatasetSpec,
    spool: Path,
    outcome: Outcome,
    balancer: balancing.Balancer | None,
    labels: list[str],
    reporter: ProgressReporter,
) -> None:
    """One process: map and reduce interleaved, batch by batch."""
    filters = outcome.filters
    kept: Counter[int] = Counter()
    with spool.open("wb") as sink:

        def reduce(batch: list[tuple[int, Mapped]]) -> None:
            records = filters.reduce([m for _, m in batch])
            kept.update(r.meta.get("source", 0) for r in records)
            _spool(records, sink, balancer, labels, outcome.language_sample)

        result = map_task(
            spec,
            0,
            1,
            reduce,
            filters,
            lambda n: reporter.update(phase="Filtering", step=n),
        )
    _account(spec, outcome, [result], kept, merge=False)


def _reduce(
    spec: DatasetSpec,
    spool: Path,
    outcome: Outcome,
    balancer: balancing.Balancer | None,
    labels: list[str],
    results: list[TaskResult],
    mapped: Iterator[Mapped],
) -> None:
    """The order-dependent stages over every task's output, merged back into input order."""
    filters = outcome.filters
    kept: Counter[int] = Counter()
    sample = outcome.language_sample
    detect = not any(r.languages for r in results)
    with spool.open("wb") as sink:
        batch: list[Mapped] = []
        for item in itertools.chain(mapped, [None]):
            if item is not None:
                batch.append(item)
            if len(batch) >= BATCH_SIZE or (item is None and batch):
                records = filters.reduce(batch)
                kept.update(r.meta.get("source", 0) for r in records)
                _spool(records, sink, balancer, labels, sample)
                batch = []
            if (
                detect
                and outcome.language_future is None
                and (len(sample) >= LANGUAGE_SAMPLE or item is None)
            ):
                outcome.language_future = engine.detect_languages_async(list(sample))
    _account(spec, outcome, results, kept, merge=True)


def _account(
    spec: DatasetSpec,
    outcome: Outcome,
    results: list[TaskResult],
    kept: Counter[int],
    merge: bool,
) -> None:
    """Merge the tasks' counts into ``outcome`` and check that every source held records."""
    filters = outcome.filters
    for result in results:
        if merge:
            outcome.stats.merge(result.stats)
            filters.pii_counts.update(result.pii_counts)
            filters.offensive_redactions += result.offensive_redactions
            filters.languages.update(result.languages)
        outcome.read += result.read
        outcome.malformed += result.malformed
    for index, source in enumerate(spec.sources):
        read = sum(r.sources[index]["read"] for r in results)
        outcome.sources.append(
            {
                "uri": display_uri(source.uri),
                "format": source.format,
                "weight": source.weight,
                "read": read,
                "malformed": sum(r.sources[index]["malformed"] for r in results),
                "kept": kept[index],
            }
        )
        if read == 0:
            raise WorkloadError(
                "EmptyDataset", f"source {display_uri(source.uri)} holds no records"
            )


def _spool(
    records: list[Record],
    sink: Any,
    balancer: balancing.Balancer | None,
    labels: list[str],
    sample: list[str],
) -> int:
    for record in records:
        if len(sample) < LANGUAGE_SAMPLE:
            sample.append(record.text())
        if balancer is not None:
            labels.append(balancer.label(record))
    if records:
        rows = [(r.fields, r.meta, r.weight, r.group, r.words) for r in records]
        pickle.dump(rows, sink, protocol=pickle.HIGHEST_PROTOCOL)
    return len(records)


def _check_errors(spec: DatasetSpec, outcome: Outcome) -> None:
    if outcome.read == 0:
        raise WorkloadError("EmptyDataset", "the sources hold no records")
    ratio = outcome.malformed / outcome.read
    if ratio > spec.max_error_ratio:
        stats = outcome.stats
        reasons = {
            k: v for k, v in stats.dropped.items() if k.startswith(("read.", "schema.")) and v
        }
        examples = [e for k in reasons for e in stats.examples.get(k, [])][:3]
        raise WorkloadError(
            "TooManyMalformedRecords",
            f"{outcome.malformed} of {outcome.read} records ({ratio:.1%}) are malformed, above "
            f"maxErrorRatio {spec.max_error_ratio:.1%}: "
            + ", ".join(f"{k.split('.', 1)[1]}={v}" for k, v in sorted(reasons.items()))
            + (f". Examples: {'; '.join(examples)}" if examples else ""),
        )


# --- pass 2 ---------------------------------------------------------------------------------


def _read_spool(spool: Path) -> Iterator[Record]:
    with spool.open("rb") as handle:
        while True:
            try:
                rows = pickle.load(handle)
            except EOFError:
                return
            for fields, meta, weight, group, words in rows:
                yield Record(fields=fields, meta=meta, weight=weight, group=group, words=words)


def _second_pass(
    spec: DatasetSpec,
    spool: Path,
    out: Path,
    outcome: Outcome,
    labels: list[str],
    reporter: ProgressReporter,
    tokenizer_uri: str | None,
) -> None:
    stats = outcome.stats
    seed = spec.split.seed
    keep_mask = _rebalance(spec, spool, outcome, labels)
    reporter.update(phase="Tokenizing", message="counting tokens and splitting")

    def kept_records() -> Iterator[tuple[int, Record]]:
        for i, record in enumerate(_read_spool(spool)):
            if keep_mask is None or keep_mask[i]:
                yield i, record

    tokenizer = _tokenizer(spec, out, outcome, tokenizer_uri, kept_records)
    lengths: list[int] = []
    after_balance: Counter[str] = Counter()
    tspec = spec.tokenizer
    with SplitWriter(out, spec.output_format, spec.record_schema) as writer:
        pending: list[tuple[int, Record]] = []

        def flush() -> None:
            counts = tok.count([r for _, r in pending], tokenizer) if tokenizer else []
            for n, (i, record) in enumerate(pending):
                if tokenizer is not None:
                    stats.enter("tokens")
                    length = counts[n]
                    if tspec and tspec.max_tokens and length > tspec.max_tokens:
                        if tspec.over_length == "drop" or not tok.truncate(
                            record, tokenizer, length - tspec.max_tokens
                        ):
                            stats.drop("tokens", "over_max_tokens")
                            continue
                        length = tok.count([record], tokenizer)[0]
                        record.words = -1
                        stats.change("tokens", "truncated")
                    stats.keep("tokens")
                else:
                    length = -1
                copies = _emit(spec, record, writer, stats, seed, length, lengths)
                outcome.words += copies * record.word_count()
                if labels and copies:
                    after_balance[labels[i]] += copies
            pending.clear()

        for item in kept_records():
            pending.append(item)
            if len(pending) >= BATCH_SIZE:
                flush()
        flush()
    outcome.splits = dict(writer.counts)
    if tokenizer is not None:
        outcome.token_lengths = np.asarray(lengths, dtype=np.int64)
    if outcome.balance is not None:
        outcome.balance["after"] = balancing.report(
            after_balance, spec.safety.balance.targets if spec.safety.balance else None
        )
    _languages(outcome)
    if outcome.records == 0:
        raise WorkloadError(
            "EmptyDataset",
            "no records survived preparation: "
            + ", ".join(f"{k}={v}" for k, v in outcome.stats.stage_counts().items()),
        )


def _emit(
    spec: DatasetSpec,
    record: Record,
    writer: SplitWriter,
    stats: StageStats,
    seed: int,
    length: int,
    lengths: list[int],
) -> int:
    """Write ``record`` as many times as its source weight says, into its split."""
    key = record.split_key()
    whole, part = math.floor(record.weight), record.weight - math.floor(record.weight)
    copies = whole + (1 if part and fraction(key, f"weight-{seed}") < part else 0)
    stats.enter("mix")
    if copies == 0:
        stats.drop("mix", "downsampled")
        return 0
    stats.keep("mix")
    if copies > 1:
        stats.change("mix", "repeated", copies - 1)
    split = (
        "validation" if fraction(key, f"split-{seed}") < spec.split.validation_fraction else "train"
    )
    row = record.to_json()
    for _ in range(copies):
        writer.write(split, row)
        if length >= 0:
            lengths.append(length)
    return copies


def _rebalance(
    spec: DatasetSpec, spool: Path, outcome: Outcome, labels: list[str]
) -> np.ndarray | None:
    config = spec.safety.balance
    if config is None:
        return None
    counts = Counter(labels)
    outcome.balance = {
        "groupBy": config.field or "termGroups",
        "before": balancing.report(counts, config.targets),
    }
    if not (config.rebalance and config.targets):
        return None
    keep = balancing.plan(counts, config.targets)
    fractions = np.fromiter(
        (fraction(r.key(), f"balance-{spec.split.seed}") for r in _read_spool(spool)),
        dtype=np.float64,
        count=len(labels),
    )
    mask = balancing.select(labels, fractions, keep)
    stats = outcome.stats
    stats.enter("balance", len(labels))
    stats.keep("balance", int(mask.sum()))
    for _ in range(len(labels) - int(mask.sum())):
        stats.drop("balance", "rebalanced")
    return mask


def _tokenizer(
    spec: DatasetSpec,
    out: Path,
    outcome: Outcome,
    tokenizer_uri: str | None,
    records: Any,
) -> Any | None:
    tspec = spec.tokenizer
    if tspec is None:
        return None
    if tspec.train is not None:
        tokenizer = tok.train(tspec, (r.text() for _, r in records()))
        tokenizer.save_pretrained(str(out / TOKENIZER_DIR))
        outcome.tokenizer = {
            "source": "trained",
            "type": tspec.train.type,
            "vocabSize": len(tokenizer),
            "path": TOKENIZER_DIR,
        }
        return tokenizer
    tokenizer = tok.load(tspec, tokenizer_uri)
    if tokenizer is not None:
        uri = tokenizer_uri or (tspec.model.uri if tspec.model else None)
        outcome.tokenizer = {
            "source": display_uri(uri or ""),
            "vocabSize": len(tokenizer),
        }
    return tokenizer


def _languages(outcome: Outcome) -> None:
    counted = outcome.filters.languages
    if counted:
        outcome.languages = {"detectedOn": "all", "counts": dict(sorted(counted.items()))}
        return
    sample = outcome.language_sample
    if not sample:
        return
    if outcome.language_future is not None:
        found = Counter(outcome.language_future.result())
    else:
        found = Counter(detect_language(text) for text in sample)
    outcome.languages = {
        "detectedOn": f"first {len(sample)} records",
        "counts": dict(sorted(found.items())),
    }
