"""The streaming stages of the pipeline, applied a batch of records at a time.

Order: clean (unicode, markup, whitespace, length bounds) -> quality -> curation -> offensive
content -> PII redaction -> exact dedup -> near dedup -> decontamination. Redaction runs
before dedup, so records differing only in personal data collapse into one.

:meth:`Filters.map` runs the per-record stages and computes what de-duplication needs (the
normalized digest, which is also the record's split group, and the MinHash sketch); any number
of tasks run it on disjoint records. :meth:`Filters.reduce` runs the order-dependent stages on
the mapped records in input order, in one process.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np
from kubetune.api.dataset import DatasetSpec

from kubetune_workloads.dataprep.cleaning import TextCleaner
from kubetune_workloads.dataprep.curation import Curator
from kubetune_workloads.dataprep.decontam import Decontaminator, prompt_texts
from kubetune_workloads.dataprep.dedup import ExactDeduper, NearDeduper, normalized_digest
from kubetune_workloads.dataprep.pii import PiiRedactor
from kubetune_workloads.dataprep.quality import quality_problem
from kubetune_workloads.dataprep.records import Record
from kubetune_workloads.dataprep.stats import StageStats
from kubetune_workloads.lexicon import OffensiveLexicon

OFFENSIVE_PLACEHOLDER = "<OFFENSIVE>"


@dataclass
class Mapped:
    """A record past the per-record stages, with what the order-dependent stages need."""

    record: Record
    signature: np.ndarray | None
    shingles: np.ndarray | None


class Filters:
    """Every per-record and per-batch stage configured by a :class:`DatasetSpec`."""

    def __init__(self, spec: DatasetSpec, stats: StageStats, index: bool = True) -> None:
        """``index=False``: a map task (per-record stages only, no prompt set loaded)."""
        self.spec = spec
        self.stats = stats
        cleaning, safety = spec.cleaning, spec.safety
        self.cleaner = TextCleaner(cleaning)
        self.curator = Curator(spec.curation) if spec.curation else None
        self.languages: Counter[str] = Counter()
        offensive = safety.offensive
        self.lexicon = (
            OffensiveLexicon.load(offensive.extra_terms, offensive.allow_terms)
            if offensive.enabled
            else None
        )
        self.pii = PiiRedactor(safety.pii.kinds) if safety.pii.enabled else None
        self.pii_counts: Counter[str] = Counter()
        self.offensive_redactions = 0
        self.exact = ExactDeduper() if cleaning.exact_dedup else None
        near = cleaning.near_dedup
        self.near = (
            NearDeduper(near.threshold, near.num_perm, near.ngram, seed=spec.split.seed)
            if near.enabled
            else None
        )
        self.hasher = self.near.hasher if self.near is not None else None
        self.decontaminator: Decontaminator | None = None
        if cleaning.decontaminate and index:
            texts = [t for uri in cleaning.decontaminate for t in prompt_texts(uri)]
            self.decontaminator = Decontaminator(texts, cleaning.decontamination_ngram)

    def process(self, batch: list[Record]) -> list[Record]:
        """The records of ``batch`` that survive every stage (modified in place)."""
        return self.reduce(self.map(batch))

    def map(self, batch: list[Record]) -> list[Mapped]:
        """The per-record stages (parallel: any task may run them on any records): the
        survivors with their exact-dedup digest and near-dedup sketch."""
        kept = [r for r in batch if self._per_record(r)]
        for record in kept:
            text = record.text()
            record.group = normalized_digest(text)
            record.words = len(text.split())
        if self.hasher is None:
            return [Mapped(r, None, None) for r in kept]
        sigs, sets = self.hasher.sketches([r.text() for r in kept])
        return [Mapped(r, sigs[i], sets[i]) for i, r in enumerate(kept)]

    def reduce(self, mapped: list[Mapped]) -> list[Record]:
        """The order-dependent stages, over mapped records in input order: exact and near
        de-duplication (first occurrence wins), then decontamination."""
        kept = mapped
        if self.exact is not None:
            kept = []
            for item in mapped:
                self.stats.enter("exact_dedup")
                if self.exact.seen_digest(item.record.group):
                    self.stats.drop("exact_dedup", "duplicate")
                    continue
                self.stats.keep("exact_dedup")
                kept.append(item)
        records = [item.record for item in kept]
        if self.near is not None:
            flags = self.near.check(
                np.stack([item.signature for item in kept])  # type: ignore[misc]
                if kept
                else np.empty((0, self.near.hasher.num_perm), dtype=np.uint32),
                [item.shingles for item in kept],  # type: ignore[misc]
            )
            records = self._flagged("near_dedup", records, flags, "near_duplicate")
        if self.decontaminator is not None:
            records = self._batch_stage(
                "decontaminate", records, self.decontaminator.contaminated, "eval_overlap"
            )
        return records

    def _flagged(
        self, stage: str, records: list[Record], flags: list[bool], reason: str
    ) -> list[Record]:
        self.stats.enter(stage, len(records))
        out = []
        for record, flagged in zip(records, flags, strict=True):
            if flagged:
                self.stats.drop(stage, reason)
            else:
                out.append(record)
        self.stats.keep(stage, len(out))
        return out

    def _batch_stage(self, stage: str, records: list[Record], test, reason: str) -> list[Record]:  # type: ignore[no-untyped-def]
        return self._flagged(stage, records, test([r.text() for r in records]), reason)

    def _per_record(self, record: Record) -> bool:
        stats = self.stats
        stats.enter("clean")
        before = record.text()
        record.map_text(self.cleaner)
        text = record.text()
        if text != before:
            stats.change("clean", "normalized")
        if not text.strip():
            stats.drop("clean", "empty")
            return False
        problem = self.cleaner.length_problem(text)
        if problem:
            stats.drop("clean", problem)
            return False
        stats.keep("clean")

        stats.enter("quality")
        problem = quality_problem(text, self.spec.cleaning.quality)
        if problem:
            stats.drop("quality", problem)
            return False
        stats.keep("quality")

        if self.curator is not None:
            stats.enter("curation")
            problem, language = self.curator.problem(text)
            if language:
                self.languages[language] += 1
            if problem:
                stats.drop("curation", problem)
                return False
            stats.keep("curation")

        if self.lexicon is not None and not self._offensive(record, text):
            return False
        if self.pii is not None:
            self._redact_pii(record)

        return True

    def _offensive(self, record: Record, text: str) -> bool:
        self.stats.enter("offensive")
        if not self.lexicon or not self.lexicon.contains(text):
            self.stats.keep("offensive")
            return True
        if self.spec.safety.offensive.mode == "drop":
            self.stats.drop("offensive", "offensive_terms")
            return False
        lexicon = self.lexicon
        record.map_text(lambda t: lexicon.redact(t, OFFENSIVE_PLACEHOLDER))
        self.offensive_redactions += 1
        self.stats.change("offensive", "redacted")
        self.stats.keep("offensive")
        return True

    def _redact_pii(self, record: Record) -> None:
        assert self.pii is not None
        found: Counter[str] = Counter()

        def redact(text: str) -> str:
            out, counts = self.pii.redact(text)  # type: ignore[union-attr]
            found.update(counts)
            return out

        record.map_text(redact)
        if found:
            self.pii_counts.update(found)
            self.stats.change("pii", "records_redacted")
