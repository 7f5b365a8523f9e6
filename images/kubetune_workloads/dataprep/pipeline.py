"""The two passes of data preparation.

Pass 1 streams every source through schema mapping and the filters (:mod:`.filters`) in
batches and spools the survivors to a temporary JSONL file, so memory holds one batch plus
what dedup must remember. Pass 2 reads the spool back: rebalancing (which needs the group
counts of pass 1), source weights, tokenizer training and token bounds, and the deterministic
train/validation split.
"""

from __future__ import annotations

import json
import math
import tempfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from kubetune.api.dataset import DatasetSpec

from kubetune_workloads import storage
from kubetune_workloads.dataprep import balance as balancing
from kubetune_workloads.dataprep import tokens as tok
from kubetune_workloads.dataprep.curation import detect_language
from kubetune_workloads.dataprep.filters import Filters
from kubetune_workloads.dataprep.formats import Malformed, Repaired
from kubetune_workloads.dataprep.output import SplitWriter
from kubetune_workloads.dataprep.records import Record, fraction
from kubetune_workloads.dataprep.schema import SchemaMapper
from kubetune_workloads.dataprep.sources import display_uri, iter_source
from kubetune_workloads.dataprep.stats import StageStats
from kubetune_workloads.errors import WorkloadError
from kubetune_workloads.progress import ProgressReporter

BATCH_SIZE = 512
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

    @property
    def records(self) -> int:
        return sum(self.splits.values())

    @property
    def tokens(self) -> int | None:
        return None if self.token_lengths is None else int(self.token_lengths.sum())


def prepare(
    spec: DatasetSpec, out: Path, reporter: ProgressReporter, tokenizer_uri: str | None = None
) -> Outcome:
    """Run both passes, writing the splits (and tokenizer) into ``out``."""
    stats = StageStats()
    filters = Filters(spec, stats)
    outcome = Outcome(stats=stats, filters=filters)
    balancer = balancing.Balancer(spec.safety.balance) if spec.safety.balance else None
    with tempfile.TemporaryDirectory(prefix="dataprep-", dir=storage.cache_root()) as tmp:
        spool = Path(tmp) / "spool.jsonl"
        labels: list[str] = []
        _first_pass(spec, spool, outcome, balancer, labels, reporter)
        _check_errors(spec, outcome)
        _second_pass(spec, spool, out, outcome, labels, reporter, tokenizer_uri)
    return outcome


# --- pass 1 ---------------------------------------------------------------------------------


def _first_pass(
    spec: DatasetSpec,
    spool: Path,
    outcome: Outcome,
    balancer: balancing.Balancer | None,
    labels: list[str],
    reporter: ProgressReporter,
) -> None:
    stats = outcome.stats
    meta_field = spec.safety.balance.field if spec.safety.balance else None
    with spool.open("w", encoding="utf-8") as sink:
        for index, source in enumerate(spec.sources):
            mapper = SchemaMapper(spec.record_schema, source.fields, spec.role_mapping, meta_field)
            counts = Counter[str]()
            batch: list[Record] = []
            for item in iter_source(source):
                if isinstance(item, Repaired):
                    stats.change("read", "encoding_repaired")
                    continue
                outcome.read += 1
                counts["read"] += 1
                stats.enter("read")
                if isinstance(item, Malformed):
                    outcome.malformed += 1
                    counts["malformed"] += 1
                    stats.drop("read", item.reason, item.example())
                    continue
                stats.keep("read")
                stats.enter("schema")
                record = mapper.map(item, f"{display_uri(source.uri)}#{counts['read']}", index)
                if isinstance(record, Malformed):
                    outcome.malformed += 1
                    counts["malformed"] += 1
                    stats.drop("schema", record.reason, record.example())
                    continue
                stats.keep("schema")
                record.weight = source.weight
                batch.append(record)
                if len(batch) >= BATCH_SIZE:
                    counts["kept"] += _spool(outcome.filters.process(batch), sink, balancer, labels)
                    batch = []
                    reporter.update(phase="Filtering", step=outcome.read)
            counts["kept"] += _spool(outcome.filters.process(batch), sink, balancer, labels)
            outcome.sources.append(
                {
                    "uri": display_uri(source.uri),
                    "format": source.format,
                    "weight": source.weight,
                    "read": counts["read"],
                    "malformed": counts["malformed"],
                    "kept": counts["kept"],
                }
            )
            if counts["read"] == 0:
                raise WorkloadError(
                    "EmptyDataset", f"source {display_uri(source.uri)} holds no records"
                )


def _spool(
    records: list[Record], sink: Any, balancer: balancing.Balancer | None, labels: list[str]
) -> int:
    for record in records:
        if balancer is not None:
            labels.append(balancer.label(record))
        row = {"f": record.fields, "m": record.meta, "w": record.weight}
        sink.write(json.dumps(row, ensure_ascii=False) + "\n")
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
    with spool.open(encoding="utf-8") as handle:
        for line in handle:
            row = json.loads(line)
            yield Record(fields=row["f"], meta=row["m"], weight=row["w"])


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
    language_sample: list[str] = []
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
                        stats.change("tokens", "truncated")
                    stats.keep("tokens")
                else:
                    length = -1
                copies = _emit(spec, record, writer, stats, seed, length, lengths)
                outcome.words += copies * len(record.text().split())
                if labels and copies:
                    after_balance[labels[i]] += copies
                if len(language_sample) < LANGUAGE_SAMPLE:
                    language_sample.append(record.text())
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
    _languages(outcome, language_sample)
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
    key = record.key()
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


def _languages(outcome: Outcome, sample: list[str]) -> None:
    counted = outcome.filters.languages
    if counted:
        outcome.languages = {"detectedOn": "all", "counts": dict(sorted(counted.items()))}
        return
    if not sample:
        return
    found = Counter(detect_language(text) for text in sample)
    outcome.languages = {
        "detectedOn": f"first {len(sample)} records",
        "counts": dict(sorted(found.items())),
    }
