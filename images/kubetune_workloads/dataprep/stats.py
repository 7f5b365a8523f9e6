"""Counting what each stage keeps and drops, and why (stages reported in the order of
:data:`.stages.STAGES`, whichever task met them first)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from kubetune_workloads.dataprep.stages import stage_names

MAX_EXAMPLES_PER_REASON = 3
EXAMPLE_CHARS = 200


@dataclass
class StageStats:
    """Records in and out of each stage, drops by ``stage.reason``, and a few examples."""

    records_in: Counter[str] = field(default_factory=Counter)
    records_out: Counter[str] = field(default_factory=Counter)
    dropped: Counter[str] = field(default_factory=Counter)
    changed: Counter[str] = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)
    order: list[str] = field(default_factory=list)
    # Input position of each example: tasks merge their examples into the first ones overall.
    example_positions: dict[str, list[int]] = field(default_factory=dict)

    def enter(self, stage: str, n: int = 1) -> None:
        if stage not in self.order:
            self.order.append(stage)
        self.records_in[stage] += n

    def keep(self, stage: str, n: int = 1) -> None:
        self.records_out[stage] += n

    def drop(self, stage: str, reason: str, example: str | None = None, position: int = 0) -> None:
        """Count one dropped record; keep up to a few (truncated) examples per reason."""
        key = f"{stage}.{reason}"
        self.dropped[key] += 1
        if example is not None:
            bucket = self.examples.setdefault(key, [])
            if len(bucket) < MAX_EXAMPLES_PER_REASON:
                bucket.append(example[:EXAMPLE_CHARS])
                self.example_positions.setdefault(key, []).append(position)

    def merge(self, other: StageStats) -> None:
        """Add the counts of ``other`` (another task's); examples stay the first by position."""
        self.records_in.update(other.records_in)
        self.records_out.update(other.records_out)
        self.dropped.update(other.dropped)
        self.changed.update(other.changed)
        for stage in other.order:
            if stage not in self.order:
                self.order.append(stage)
        for key, texts in other.examples.items():
            mine = list(
                zip(self.example_positions.get(key, []), self.examples.get(key, []), strict=True)
            )
            theirs = list(zip(other.example_positions.get(key, []), texts, strict=True))
            merged = sorted(mine + theirs)[:MAX_EXAMPLES_PER_REASON]
            self.example_positions[key] = [p for p, _ in merged]
            self.examples[key] = [t for _, t in merged]

    def change(self, stage: str, what: str, n: int = 1) -> None:
        """Count a modification that keeps the record (a redaction, a repaired encoding)."""
        if n:
            self.changed[f"{stage}.{what}"] += n

    def dropped_in(self, stage: str) -> int:
        return sum(v for k, v in self.dropped.items() if k.startswith(stage + "."))

    def stages(self) -> list[dict[str, Any]]:
        return [
            {
                "stage": s,
                "in": self.records_in[s],
                "out": self.records_out[s],
                "dropped": {
                    k.split(".", 1)[1]: v
                    for k, v in sorted(self.dropped.items())
                    if k.startswith(s + ".")
                },
            }
            for s in self.ordered()
        ]

    def ordered(self) -> list[str]:
        """Stages met, in pipeline order (independent of which task met which first)."""
        rank = {name: i for i, name in enumerate(stage_names())}
        return sorted(self.order, key=lambda s: rank.get(s, len(rank)))

    def stage_counts(self) -> dict[str, int]:
        """Records removed per ``stage.reason`` (what the Dataset status shows)."""
        return dict(sorted(self.dropped.items()))
