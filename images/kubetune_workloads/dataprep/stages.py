"""The dataprep stages, in pipeline order: one typed class per stage, one line each in STAGES.

Declared the way cert-manager declares its policy chains: an ordered list of named checks,
each enabled from the spec and applied in turn. Every stage has a ``name`` (its key in
``stats.json``, the data card and the Dataset's ``status.stageCounts``), the ``phase`` it runs
in, the ``reasons`` it drops records for, and ``enabled(spec)``. What a stage does depends on
its phase:

- ``read``: reading and schema mapping (:mod:`.sources`, :mod:`.schema`), in the map tasks;
- ``record`` (:class:`RecordStage`): one record at a time, in any map task; ``apply`` returns
  the reason to drop the record, or None (it may rewrite the record's text in place);
- ``ordered`` (:class:`OrderedStage`): over mapped records in input order, in the reduce
  (first occurrence wins); ``flags`` says which records to drop;
- ``final``: pass 2 over the de-duplicated records (:mod:`.pipeline`: balance, token bounds,
  source weights).

Adding a per-record filter is one :class:`RecordStage` subclass plus one line in
:data:`STAGES`; :class:`~.filters.Filters` builds the enabled ones, and the stats and the data
card list stages in this order.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar, Literal

import numpy as np
from kubetune.api.dataset import DatasetSpec

from kubetune_workloads.dataprep.cleaning import TextCleaner
from kubetune_workloads.dataprep.curation import Curator
from kubetune_workloads.dataprep.decontam import Decontaminator, prompt_texts
from kubetune_workloads.dataprep.dedup import ExactDeduper, NearDeduper
from kubetune_workloads.dataprep.pii import PiiRedactor
from kubetune_workloads.dataprep.quality import quality_problem
from kubetune_workloads.dataprep.records import Record
from kubetune_workloads.lexicon import OffensiveLexicon

if TYPE_CHECKING:
    from kubetune_workloads.dataprep.filters import Mapped
    from kubetune_workloads.dataprep.stats import StageStats

Phase = Literal["read", "record", "ordered", "final"]
OFFENSIVE_PLACEHOLDER = "<OFFENSIVE>"


@dataclass
class Tally:
    """What stages count besides records kept and dropped (reported in ``stats.json``)."""

    pii: Counter[str] = field(default_factory=Counter)
    languages: Counter[str] = field(default_factory=Counter)
    offensive_redactions: int = 0


class Stage:
    """One named stage of the pipeline."""

    name: ClassVar[str]
    phase: ClassVar[Phase]
    reasons: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def enabled(cls, spec: DatasetSpec) -> bool:
        """Whether ``spec`` turns this stage on."""
        return True


class RecordStage(Stage):
    """A per-record stage: independent of every other record, so any map task may run it."""

    phase: ClassVar[Phase] = "record"
    # Counted in the stats as records in and out (False: it only reports changes).
    counted: ClassVar[bool] = True
    # Whether ``apply`` may rewrite the record's text (the next stages see the new text).
    rewrites: ClassVar[bool] = False

    def __init__(self, spec: DatasetSpec, stats: StageStats, tally: Tally) -> None:
        self.spec = spec
        self.stats = stats
        self.tally = tally

    def apply(self, record: Record, text: str) -> str | None:
        """The reason to drop ``record`` (whose text is ``text``), or None to keep it."""
        raise NotImplementedError


class OrderedStage(Stage):
    """A stage over records in input order (the first occurrence wins), in the reduce."""

    phase: ClassVar[Phase] = "ordered"

    def __init__(self, spec: DatasetSpec) -> None:
        self.spec = spec

    @property
    def reason(self) -> str:
        return self.reasons[0]

    def flags(self, items: list[Mapped]) -> list[bool]:
        """For each item in order: True to drop it."""
        raise NotImplementedError


# --- read -----------------------------------------------------------------------------------


class Read(Stage):
    """Sources read and parsed (:mod:`.sources`, :mod:`.formats`)."""

    name = "read"
    phase = "read"
    reasons = (
        "invalid_json",
        "not_an_object",
        "too_long",
        "unreadable_encoding",
        "invalid_csv",
        "csv_columns",
        "invalid_parquet",
    )


class Schema(Stage):
    """Items mapped to the record schema (:mod:`.schema`)."""

    name = "schema"
    phase = "read"
    reasons = ("missing_field", "wrong_type", "empty_field", "unknown_role", "no_assistant_turn")


# --- per record -----------------------------------------------------------------------------


class Clean(RecordStage):
    """Unicode, markup and whitespace normalization, then length bounds."""

    name = "clean"
    reasons = ("empty", "too_short_chars", "too_long_chars", "too_short_words", "too_long_words")
    rewrites = True

    def __init__(self, spec: DatasetSpec, stats: StageStats, tally: Tally) -> None:
        super().__init__(spec, stats, tally)
        self.cleaner = TextCleaner(spec.cleaning)

    def apply(self, record: Record, text: str) -> str | None:
        record.map_text(self.cleaner)
        cleaned = record.text()
        if cleaned != text:
            self.stats.change("clean", "normalized")
        if not cleaned.strip():
            return "empty"
        return self.cleaner.length_problem(cleaned)


class Quality(RecordStage):
    """Gopher/C4-style heuristics (:mod:`.quality`); counted even when turned off."""

    name = "quality"
    reasons = (
        "mean_word_length",
        "symbol_ratio",
        "alpha_words",
        "repeated_lines",
        "boilerplate",
        "repeated_ngrams",
        "terminal_punctuation",
        "no_words",
    )

    def apply(self, record: Record, text: str) -> str | None:
        return quality_problem(text, self.spec.cleaning.quality)


class Curation(RecordStage):
    """Keywords, regexes, relevance and language (:mod:`.curation`)."""

    name = "curation"
    reasons = ("excluded_keyword", "excluded_regex", "low_relevance", "language")

    @classmethod
    def enabled(cls, spec: DatasetSpec) -> bool:
        return spec.curation is not None

    def __init__(self, spec: DatasetSpec, stats: StageStats, tally: Tally) -> None:
        super().__init__(spec, stats, tally)
        assert spec.curation is not None
        self.curator = Curator(spec.curation)

    def apply(self, record: Record, text: str) -> str | None:
        problem, language = self.curator.problem(text)
        if language:
            self.tally.languages[language] += 1
        return problem


class Offensive(RecordStage):
    """The offensive-terms lexicon: drop the record, or redact the terms."""

    name = "offensive"
    reasons = ("offensive_terms",)
    rewrites = True

    @classmethod
    def enabled(cls, spec: DatasetSpec) -> bool:
        return spec.safety.offensive.enabled

    def __init__(self, spec: DatasetSpec, stats: StageStats, tally: Tally) -> None:
        super().__init__(spec, stats, tally)
        offensive = spec.safety.offensive
        self.lexicon = OffensiveLexicon.load(offensive.extra_terms, offensive.allow_terms)

    def apply(self, record: Record, text: str) -> str | None:
        if not self.lexicon.contains(text):
            return None
        if self.spec.safety.offensive.mode == "drop":
            return "offensive_terms"
        lexicon = self.lexicon
        record.map_text(lambda t: lexicon.redact(t, OFFENSIVE_PLACEHOLDER))
        self.tally.offensive_redactions += 1
        self.stats.change("offensive", "redacted")
        return None


class Pii(RecordStage):
    """Personal data replaced by typed placeholders; never drops (reports changes only)."""

    name = "pii"
    counted = False
    rewrites = True

    @classmethod
    def enabled(cls, spec: DatasetSpec) -> bool:
        return spec.safety.pii.enabled

    def __init__(self, spec: DatasetSpec, stats: StageStats, tally: Tally) -> None:
        super().__init__(spec, stats, tally)
        self.redactor = PiiRedactor(spec.safety.pii.kinds)

    def apply(self, record: Record, text: str) -> str | None:
        found: Counter[str] = Counter()

        def redact(value: str) -> str:
            out, counts = self.redactor.redact(value)
            found.update(counts)
            return out

        record.map_text(redact)
        if found:
            self.tally.pii.update(found)
            self.stats.change("pii", "records_redacted")
        return None


# --- in input order -------------------------------------------------------------------------


class ExactDedup(OrderedStage):
    """Exact duplicates of the normalized text (the digest the map computed)."""

    name = "exact_dedup"
    reasons = ("duplicate",)

    @classmethod
    def enabled(cls, spec: DatasetSpec) -> bool:
        return spec.cleaning.exact_dedup

    def __init__(self, spec: DatasetSpec) -> None:
        super().__init__(spec)
        self.deduper = ExactDeduper()

    def flags(self, items: list[Mapped]) -> list[bool]:
        return [self.deduper.seen_digest(item.record.group) for item in items]


class NearDedup(OrderedStage):
    """Near duplicates: MinHash LSH with exact-Jaccard confirmation (:mod:`.dedup`)."""

    name = "near_dedup"
    reasons = ("near_duplicate",)

    @classmethod
    def enabled(cls, spec: DatasetSpec) -> bool:
        return spec.cleaning.near_dedup.enabled

    def __init__(self, spec: DatasetSpec) -> None:
        super().__init__(spec)
        near = spec.cleaning.near_dedup
        self.deduper = NearDeduper(near.threshold, near.num_perm, near.ngram, seed=spec.split.seed)

    def flags(self, items: list[Mapped]) -> list[bool]:
        # with near dedup on, the map sketched every record
        sigs = np.stack([item.signature for item in items if item.signature is not None])
        sets = [item.shingles for item in items if item.shingles is not None]
        return self.deduper.check(sigs, sets)


class Decontaminate(OrderedStage):
    """Records overlapping the evaluation prompts (:mod:`.decontam`)."""

    name = "decontaminate"
    reasons = ("eval_overlap",)

    @classmethod
    def enabled(cls, spec: DatasetSpec) -> bool:
        return bool(spec.cleaning.decontaminate)

    def __init__(self, spec: DatasetSpec) -> None:
        super().__init__(spec)
        cleaning = spec.cleaning
        texts = [t for uri in cleaning.decontaminate or [] for t in prompt_texts(uri)]
        self.decontaminator = Decontaminator(texts, cleaning.decontamination_ngram)

    def flags(self, items: list[Mapped]) -> list[bool]:
        return self.decontaminator.contaminated([item.record.text() for item in items])


# --- final pass -----------------------------------------------------------------------------


class BalanceStage(Stage):
    """Down-sampling over-represented groups to the balance targets (:mod:`.balance`)."""

    name = "balance"
    phase = "final"
    reasons = ("rebalanced",)

    @classmethod
    def enabled(cls, spec: DatasetSpec) -> bool:
        balance = spec.safety.balance
        return balance is not None and balance.rebalance and bool(balance.targets)


class Tokens(Stage):
    """Token counts and the per-record bound (:mod:`.tokens`)."""

    name = "tokens"
    phase = "final"
    reasons = ("over_max_tokens",)

    @classmethod
    def enabled(cls, spec: DatasetSpec) -> bool:
        return spec.tokenizer is not None


class Mix(Stage):
    """Source weights: whole copies, and a seeded sample for the fractional part."""

    name = "mix"
    phase = "final"
    reasons = ("downsampled",)


STAGES: tuple[type[Stage], ...] = (
    Read,
    Schema,
    Clean,
    Quality,
    Curation,
    Offensive,
    Pii,
    ExactDedup,
    NearDedup,
    Decontaminate,
    BalanceStage,
    Tokens,
    Mix,
)


def stage_names() -> list[str]:
    """The names of every stage, in pipeline order (how stats and the data card order them)."""
    return [stage.name for stage in STAGES]


def record_stages(spec: DatasetSpec, stats: StageStats, tally: Tally) -> list[RecordStage]:
    """The per-record stages ``spec`` enables, in order."""
    return [
        stage(spec, stats, tally)
        for stage in STAGES
        if issubclass(stage, RecordStage) and stage.enabled(spec)
    ]


def ordered_stages(spec: DatasetSpec) -> list[OrderedStage]:
    """The input-order stages ``spec`` enables, in order."""
    return [
        stage(spec) for stage in STAGES if issubclass(stage, OrderedStage) and stage.enabled(spec)
    ]
