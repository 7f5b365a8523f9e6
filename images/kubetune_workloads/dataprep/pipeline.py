"""The two passes of data preparation.

Pass 1 streams every source through schema mapping and the stages (:mod:`.stages`, run by
:mod:`.filters`) in batches, so memory holds one batch plus what dedup must remember. It is a
map (the per-record stages, which any number of tasks run on disjoint chunks of the input:
:func:`map_task`) and a reduce (the order-dependent stages, over the mapped records merged back
into input order); with one task both run interleaved in this process, with several the map
runs as datatrove tasks (:mod:`.engine`) and the reduce follows their shards as they grow.

Pass 2 (:class:`_FinalPass`): token bounds, source weights and the deterministic
train/validation split (by exact-duplicate group: :meth:`Record.split_key`). It runs on the
records as pass 1 lets them through, unless it needs all of pass 1 first (rebalancing needs the
group counts, a tokenizer to train needs every text): then pass 1 spools its survivors to a
temporary file (pickled batches) that pass 2 reads back.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import pickle
import tempfile
import time
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
# A map task among several hands on smaller batches: the reduce following its shard waits less
# for each one, and has less left to do when the last task ends.
TASK_BATCH_SIZE = 256
CHUNK = 128  # input items per task assignment (tasks take chunks round robin: balanced)
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
        spool = Path(tmp) / "spool.pkl"
        labels: list[str] = []
        n_tasks = tasks if tasks is not None else engine.default_tasks(spec)
        started = time.perf_counter()
        survivors = _Survivors(spec, spool, out, outcome, balancer, labels, tokenizer_uri)
        # Holds the map's executor until the end: its teardown overlaps the rest of the run.
        with contextlib.ExitStack() as map_run:
            try:
                _pass_one(spec, outcome, survivors, reporter, n_tasks, shards, map_run, tmp)
            finally:
                survivors.close()
            _check_errors(spec, outcome)
            first_done = time.perf_counter()
            if survivors.final is None:
                _second_pass(spec, spool, out, outcome, labels, reporter, tokenizer_uri)
            else:  # pass 2 ran as records came
                _rebalance(spec, spool, outcome, labels)  # the balance report (no rebalancing)
                _finish(spec, outcome, survivors.splits, survivors.final)
    engine.LAST_PHASE_SECONDS.clear()
    engine.LAST_PHASE_SECONDS["pass1"] = first_done - started
    engine.LAST_PHASE_SECONDS["pass2"] = time.perf_counter() - first_done
    return outcome


def _pass_one(
    spec: DatasetSpec,
    outcome: Outcome,
    survivors: _Survivors,
    reporter: ProgressReporter,
    tasks: int,
    shards: Path | None,
    map_run: contextlib.ExitStack,
    scratch: str,
) -> None:
    """Pass 1 in this process (one task, no shard folder given), or as ``tasks`` map tasks
    (local processes, or other pods' shards in ``shards``) followed by this process' reduce;
    ``map_run`` ends the map's executor (the caller closes it when the run is done)."""
    if tasks <= 1 and shards is None:
        _first_pass(spec, outcome, survivors, reporter)
        return
    reporter.update(phase="Filtering", message=f"{tasks} tasks")
    folder = shards or Path(scratch) / "map"
    # The tasks already completed are skipped; the reduce follows the others' shards.
    merged = map_run.enter_context(engine.streamed_map(spec, folder, tasks))
    kept = _reduce(spec, outcome, survivors, merged)
    _account(spec, outcome, engine.read_results(folder, tasks), kept, merge=True)


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
    task = _MapTask(spec, rank, world, filters, TaskResult(stats=filters.stats))
    for index in range(len(spec.sources)):
        task.map_source(index, sink, progress)
    task.result.pii_counts = filters.pii_counts
    task.result.offensive_redactions = filters.offensive_redactions
    task.result.languages = filters.languages
    return task.result


@dataclass
class _MapTask:
    """One map task's walk over the input: which items it owns, and what it counted."""

    spec: DatasetSpec
    rank: int
    world: int
    filters: Filters
    result: TaskResult
    position: int = -1  # of the last input item met, over all sources

    def map_source(
        self,
        index: int,
        sink: Callable[[list[tuple[int, Mapped]]], None],
        progress: Callable[[int], None] | None,
    ) -> None:
        """Read source ``index``; map the owned items' records in batches into ``sink``."""
        spec, stats = self.spec, self.filters.stats
        source = spec.sources[index]
        meta_field = spec.safety.balance.field if spec.safety.balance else None
        mapper = SchemaMapper(spec.record_schema, source.fields, spec.role_mapping, meta_field)
        counts = Counter[str]()
        number = 0
        batch: list[Record] = []
        for item in iter_source(source):
            if isinstance(item, Repaired):
                if owner(self.position + 1, self.world) == self.rank:
                    stats.change("read", "encoding_repaired")
                continue
            self.position += 1
            number += 1
            if owner(self.position, self.world) != self.rank:
                continue
            record = self._read(item, mapper, f"{display_uri(source.uri)}#{number}", index)
            counts["read"] += 1
            if record is None:
                counts["malformed"] += 1
                continue
            record.weight = source.weight
            batch.append(record)
            if len(batch) >= (BATCH_SIZE if self.world == 1 else TASK_BATCH_SIZE):
                sink([(m.record.position, m) for m in self.filters.map(batch)])
                batch = []
                if progress is not None:
                    progress(self.position + 1)
        sink([(m.record.position, m) for m in self.filters.map(batch)])
        self.result.sources.append(counts)

    def _read(self, item: Any, mapper: SchemaMapper, where: str, index: int) -> Record | None:
        """The record of one owned input item, or None (counted) when it is malformed."""
        stats, position = self.filters.stats, self.position
        self.result.read += 1
        stats.enter("read")
        if isinstance(item, Malformed):
            self.result.malformed += 1
            stats.drop("read", item.reason, item.example(), position)
            return None
        stats.keep("read")
        stats.enter("schema")
        record = mapper.map(item, where, index)
        if isinstance(record, Malformed):
            self.result.malformed += 1
            stats.drop("schema", record.reason, record.example(), position)
            return None
        stats.keep("schema")
        record.position = position
        return record


def _first_pass(
    spec: DatasetSpec, outcome: Outcome, survivors: _Survivors, reporter: ProgressReporter
) -> None:
    """One process: map and reduce interleaved, batch by batch."""
    filters = outcome.filters
    kept: Counter[int] = Counter()

    def reduce(batch: list[tuple[int, Mapped]]) -> None:
        records = filters.reduce([m for _, m in batch])
        kept.update(r.meta.get("source", 0) for r in records)
        survivors.add(records)

    result = map_task(
        spec, 0, 1, reduce, filters, lambda n: reporter.update(phase="Filtering", step=n)
    )
    _account(spec, outcome, [result], kept, merge=False)


def _reduce(
    spec: DatasetSpec, outcome: Outcome, survivors: _Survivors, mapped: Iterator[Mapped]
) -> Counter[int]:
    """The order-dependent stages over every task's output, merged back into input order;
    returns the records kept per source."""
    filters = outcome.filters
    kept: Counter[int] = Counter()
    sample = outcome.language_sample
    # With a language filter the map tasks count every record's language: no sample needed.
    detect = not (spec.curation and spec.curation.languages)
    batch: list[Mapped] = []
    for item in itertools.chain(mapped, [None]):
        if item is not None:
            batch.append(item)
        if len(batch) >= BATCH_SIZE or (item is None and batch):
            records = filters.reduce(batch)
            kept.update(r.meta.get("source", 0) for r in records)
            survivors.add(records)
            batch = []
        if (
            detect
            and outcome.language_future is None
            and (len(sample) >= LANGUAGE_SAMPLE or item is None)
        ):
            outcome.language_future = engine.detect_languages_async(list(sample))
    return kept


class _Survivors:
    """Where pass 1 puts the records that survive it: a spool file that pass 2 reads back when
    pass 2 needs a global view first (rebalancing, a tokenizer to train), else pass 2 itself,
    as the records come (nothing spooled: no file written and read back)."""

    def __init__(
        self,
        spec: DatasetSpec,
        spool: Path,
        out: Path,
        outcome: Outcome,
        balancer: balancing.Balancer | None,
        labels: list[str],
        tokenizer_uri: str | None,
    ) -> None:
        self.sample, self.balancer, self.labels = outcome.language_sample, balancer, labels
        self.final: _FinalPass | None = None
        self.splits: dict[str, int] = {}
        self._spool: Any = None
        self._writer: SplitWriter | None = None
        balance, tspec = spec.safety.balance, spec.tokenizer
        if (balance and balance.rebalance and balance.targets) or (tspec and tspec.train):
            self._spool = spool.open("wb")
            return
        tokenizer = _tokenizer(spec, out, outcome, tokenizer_uri, None)
        self.final = _FinalPass(spec, outcome, labels, tokenizer)
        self._writer = SplitWriter(out, spec.output_format, spec.record_schema).__enter__()

    def add(self, records: list[Record]) -> None:
        first = len(self.labels)
        for record in records:
            if len(self.sample) < LANGUAGE_SAMPLE:
                self.sample.append(record.text())
            if self.balancer is not None:
                self.labels.append(self.balancer.label(record))
        if not records:
            return
        if self.final is not None and self._writer is not None:
            self.final.write([(first + i, r) for i, r in enumerate(records)], self._writer)
            return
        rows = [(r.fields, r.meta, r.weight, r.group, r.words) for r in records]
        pickle.dump(rows, self._spool, protocol=pickle.HIGHEST_PROTOCOL)

    def close(self) -> None:
        if self._spool is not None:
            self._spool.close()
        if self._writer is not None:
            self._writer.__exit__(None, None, None)
            self.splits = dict(self._writer.counts)


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
    """Pass 2 over the spool: rebalance, tokenizer, token bounds, weights, split and write."""
    keep_mask = _rebalance(spec, spool, outcome, labels)
    reporter.update(phase="Tokenizing", message="counting tokens and splitting")

    def kept_records() -> Iterator[tuple[int, Record]]:
        for i, record in enumerate(_read_spool(spool)):
            if keep_mask is None or keep_mask[i]:
                yield i, record

    tokenizer = _tokenizer(spec, out, outcome, tokenizer_uri, kept_records)
    final = _FinalPass(spec, outcome, labels, tokenizer)
    with SplitWriter(out, spec.output_format, spec.record_schema) as writer:
        batch: list[tuple[int, Record]] = []
        for item in kept_records():
            batch.append(item)
            if len(batch) >= BATCH_SIZE:
                final.write(batch, writer)
                batch = []
        final.write(batch, writer)
    _finish(spec, outcome, writer.counts, final)


class _FinalPass:
    """Token bounds, source weights and the split, a batch of spooled records at a time."""

    def __init__(
        self, spec: DatasetSpec, outcome: Outcome, labels: list[str], tokenizer: Any | None
    ) -> None:
        self.spec = spec
        self.outcome = outcome
        self.labels = labels
        self.tokenizer = tokenizer
        self.lengths: list[int] = []  # tokens of every record written (copies included)
        self.after_balance: Counter[str] = Counter()

    def write(self, batch: list[tuple[int, Record]], writer: SplitWriter) -> None:
        """Write the records of ``batch`` (spool index, record) that stay, into their split."""
        tokenizer, outcome = self.tokenizer, self.outcome
        counts = tok.count([r for _, r in batch], tokenizer) if tokenizer else []
        for n, (i, record) in enumerate(batch):
            length = self._bounded(record, counts[n]) if tokenizer is not None else -1
            if length is None:
                continue
            seed = self.spec.split.seed
            copies = _emit(self.spec, record, writer, outcome.stats, seed, length, self.lengths)
            outcome.words += copies * record.word_count()
            if self.labels and copies:
                self.after_balance[self.labels[i]] += copies

    def _bounded(self, record: Record, length: int) -> int | None:
        """The tokens stage: ``record``'s length after ``maxTokens`` (None: dropped)."""
        stats, tspec, tokenizer = self.outcome.stats, self.spec.tokenizer, self.tokenizer
        stats.enter("tokens")
        if tspec and tspec.max_tokens and length > tspec.max_tokens:
            if tspec.over_length == "drop" or not tok.truncate(
                record, tokenizer, length - tspec.max_tokens
            ):
                stats.drop("tokens", "over_max_tokens")
                return None
            length = tok.count([record], tokenizer)[0]
            record.words = -1
            stats.change("tokens", "truncated")
        stats.keep("tokens")
        return length


def _finish(spec: DatasetSpec, outcome: Outcome, splits: dict[str, int], final: _FinalPass) -> None:
    """Fill ``outcome`` from pass 2; refuse a dataset left empty."""
    outcome.splits = dict(splits)
    if final.tokenizer is not None:
        outcome.token_lengths = np.asarray(final.lengths, dtype=np.int64)
    if outcome.balance is not None:
        outcome.balance["after"] = balancing.report(
            final.after_balance, spec.safety.balance.targets if spec.safety.balance else None
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
