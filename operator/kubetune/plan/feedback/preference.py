"""The preference stage of a cycle: which algorithm, on which data, chosen from what was
collected.

``spec.training.preference`` unset: supervised only (the loop as before). Set, the cycle's
collect step also writes preference records and reports ``pairedRecords`` (chosen/rejected,
corrections) and ``desirableRecords``/``undesirableRecords`` (thumbs up/down). Then:

* ``auto``: DPO on the pairs when there are any, else KTO on the rated answers, else none;
* ``dpo``/``ipo``/``orpo``/``simpo``: on the pairs, none without pairs;
* ``kto``: on the unpaired records (rated answers, and each pair split into a desirable and an
  undesirable answer).

With no preference data a cycle ``after-sft`` trains the supervised stage only; a cycle
``instead-of-sft`` has nothing to train and ends ``NoPreferenceFeedback``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from kubetune.api.feedback import PAIRED_ALGORITHMS, FeedbackLoopSpec
from kubetune.api.steps import PREFERENCE_PAIRS_FILE, PREFERENCE_UNPAIRED_FILE

PREFERENCE_COUNTS = ("pairedRecords", "desirableRecords", "undesirableRecords")


@dataclass(frozen=True)
class PreferenceCounts:
    """What a collect step found for a preference stage."""

    pairs: int = 0
    desirable: int = 0
    undesirable: int = 0

    @classmethod
    def from_metrics(cls, metrics: dict[str, float]) -> PreferenceCounts:
        pairs, desirable, undesirable = (int(metrics.get(k, 0)) for k in PREFERENCE_COUNTS)
        return cls(pairs, desirable, undesirable)


@dataclass(frozen=True)
class PreferenceChoice:
    """A cycle's training plan: the preference algorithm (None: no preference stage)."""

    algorithm: str | None
    stage: Literal["after-sft", "instead-of-sft"]
    data_file: str | None  # the collected file the preference Dataset reads
    records: int | None  # pairs (paired algorithms) or unpaired records (kto); None: unknown
    why: str

    @property
    def trains_sft(self) -> bool:
        return self.stage == "after-sft"

    def summary(self) -> str:
        """``dpo after SFT on 12 pairs``: what the cycle's preference stage is."""
        if self.algorithm is None:
            return self.why
        unit = "unpaired records" if self.algorithm == "kto" else "pairs"
        where = "after SFT" if self.trains_sft else "instead of SFT"
        if self.records is None:
            return f"{self.algorithm} {where}"
        return f"{self.algorithm} {where} on {self.records} {unit}"


def choose(spec: FeedbackLoopSpec, counts: PreferenceCounts) -> PreferenceChoice | None:
    """The cycle's preference stage; None when the loop has none (supervised only)."""
    wanted = spec.training.preference if spec.training is not None else None
    if wanted is None:
        return None
    stage = wanted.stage
    rated = counts.desirable + counts.undesirable
    algorithm = wanted.algorithm
    if algorithm == "auto":
        algorithm = "dpo" if counts.pairs else "kto"
    if algorithm in PAIRED_ALGORITHMS:
        if counts.pairs:
            return PreferenceChoice(algorithm, stage, PREFERENCE_PAIRS_FILE, counts.pairs, "")
        return _none(stage, f"{algorithm} needs pairs and the cycle collected none")
    unpaired = 2 * counts.pairs + rated
    if unpaired:
        return PreferenceChoice("kto", stage, PREFERENCE_UNPAIRED_FILE, unpaired, "")
    return _none(stage, "the cycle collected no pairs and no rated answers")


def _none(stage: Literal["after-sft", "instead-of-sft"], why: str) -> PreferenceChoice:
    then = "supervised stage only" if stage == "after-sft" else "nothing to train"
    return PreferenceChoice(None, stage, None, 0, f"no preference stage: {why}; {then}")


def chosen_earlier(spec: FeedbackLoopSpec, algorithm: str) -> PreferenceChoice:
    """The choice a cycle made, read from its preference FinetuneJob (when its collect Job,
    and with it the counts, is gone: e.g. deleted by its TTL while a person decides)."""
    wanted = spec.training.preference if spec.training is not None else None
    stage = wanted.stage if wanted is not None else "after-sft"
    data = PREFERENCE_UNPAIRED_FILE if algorithm == "kto" else PREFERENCE_PAIRS_FILE
    return PreferenceChoice(algorithm, stage, data, None, "")
