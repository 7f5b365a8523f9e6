"""The streaming stages of the pipeline, applied a batch of records at a time.

The stages and their order are declared in :mod:`.stages` (clean -> quality -> curation ->
offensive content -> PII redaction -> exact dedup -> near dedup -> decontamination). Redaction
runs before dedup, so records differing only in personal data collapse into one.

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

from kubetune_workloads.dataprep.dedup import normalized_digest
from kubetune_workloads.dataprep.minhash import MinHasher
from kubetune_workloads.dataprep.records import Record
from kubetune_workloads.dataprep.stages import NearDedup, Tally, ordered_stages, record_stages
from kubetune_workloads.dataprep.stats import StageStats


@dataclass
class Mapped:
    """A record past the per-record stages, with what the order-dependent stages need."""

    record: Record
    signature: np.ndarray | None
    shingles: np.ndarray | None


class Filters:
    """The per-record and in-order stages a :class:`DatasetSpec` enables (:mod:`.stages`)."""

    def __init__(self, spec: DatasetSpec, stats: StageStats, index: bool = True) -> None:
        """``index=False``: a map task (per-record stages only, no prompt set loaded)."""
        self.spec = spec
        self.stats = stats
        self.tally = Tally()
        self.record_stages = record_stages(spec, stats, self.tally)
        self.ordered_stages = ordered_stages(spec) if index else []
        near = spec.cleaning.near_dedup
        self.hasher: MinHasher | None = None
        for stage in self.ordered_stages:
            if isinstance(stage, NearDedup):
                self.hasher = stage.deduper.hasher
        if self.hasher is None and near.enabled:
            self.hasher = MinHasher(num_perm=near.num_perm, ngram=near.ngram, seed=spec.split.seed)

    @property
    def pii_counts(self) -> Counter[str]:
        return self.tally.pii

    @property
    def languages(self) -> Counter[str]:
        return self.tally.languages

    @property
    def offensive_redactions(self) -> int:
        return self.tally.offensive_redactions

    @offensive_redactions.setter
    def offensive_redactions(self, value: int) -> None:
        self.tally.offensive_redactions = value

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
        for stage in self.ordered_stages:
            if not kept:
                break
            flags = stage.flags(kept)
            self.stats.enter(stage.name, len(kept))
            kept = [item for item, flagged in zip(kept, flags, strict=True) if not flagged]
            self.stats.keep(stage.name, len(kept))
            for _ in range(len(flags) - len(kept)):
                self.stats.drop(stage.name, stage.reason)
        return [item.record for item in kept]

    def _per_record(self, record: Record) -> bool:
        """Run the per-record stages in order; False when one of them drops ``record``."""
        stats = self.stats
        text = record.text()
        for stage in self.record_stages:
            if stage.counted:
                stats.enter(stage.name)
            reason = stage.apply(record, text)
            if reason is not None:
                stats.drop(stage.name, reason)
                return False
            if stage.counted:
                stats.keep(stage.name)
            if stage.rewrites:
                text = record.text()
        return True
