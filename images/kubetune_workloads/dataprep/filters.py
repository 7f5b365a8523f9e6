"""The streaming stages of the pipeline, applied a batch of records at a time.

Order: clean (unicode, markup, whitespace, length bounds) -> quality -> curation -> offensive
content -> PII redaction -> exact dedup -> near dedup -> decontamination. Redaction runs
before dedup, so records differing only in personal data collapse into one.
"""

from __future__ import annotations

from collections import Counter

from kubetune.api.dataset import DatasetSpec

from kubetune_workloads.dataprep.cleaning import TextCleaner
from kubetune_workloads.dataprep.curation import Curator
from kubetune_workloads.dataprep.decontam import Decontaminator, prompt_texts
from kubetune_workloads.dataprep.dedup import ExactDeduper, NearDeduper
from kubetune_workloads.dataprep.pii import PiiRedactor
from kubetune_workloads.dataprep.quality import quality_problem
from kubetune_workloads.dataprep.records import Record
from kubetune_workloads.dataprep.stats import StageStats
from kubetune_workloads.lexicon import OffensiveLexicon

OFFENSIVE_PLACEHOLDER = "<OFFENSIVE>"


class Filters:
    """Every per-record and per-batch stage configured by a :class:`DatasetSpec`."""

    def __init__(self, spec: DatasetSpec, stats: StageStats) -> None:
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
        self.decontaminator: Decontaminator | None = None
        if cleaning.decontaminate:
            texts = [t for uri in cleaning.decontaminate for t in prompt_texts(uri)]
            self.decontaminator = Decontaminator(texts, cleaning.decontamination_ngram)

    def process(self, batch: list[Record]) -> list[Record]:
        """The records of ``batch`` that survive every stage (modified in place)."""
        kept = [r for r in batch if self._per_record(r)]
        if self.near is not None:
            kept = self._batch_stage("near_dedup", kept, self.near.duplicates, "near_duplicate")
        if self.decontaminator is not None:
            kept = self._batch_stage(
                "decontaminate", kept, self.decontaminator.contaminated, "eval_overlap"
            )
        return kept

    def _batch_stage(self, stage: str, records: list[Record], test, reason: str) -> list[Record]:  # type: ignore[no-untyped-def]
        self.stats.enter(stage, len(records))
        flags = test([r.text() for r in records])
        out = []
        for record, flagged in zip(records, flags, strict=True):
            if flagged:
                self.stats.drop(stage, reason)
            else:
                out.append(record)
        self.stats.keep(stage, len(out))
        return out

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

        if self.exact is not None:
            stats.enter("exact_dedup")
            if self.exact.seen(record.text()):
                stats.drop("exact_dedup", "duplicate")
                return False
            stats.keep("exact_dedup")
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
