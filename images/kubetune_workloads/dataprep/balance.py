"""Balance: how records spread over groups, and down-sampling to target proportions.

Groups come from a record field (``balance.field``, e.g. ``customer_gender``) or from term
groups (``{female: [she, her], male: [he, his]}``; whole-word, case-insensitive; a record
matching terms of several groups is ``mixed``, of none ``none``). Rebalancing only removes
records: it finds the largest dataset in which every targeted group has its target share
(groups without a target share the remainder) and keeps, within each group, the records with
the smallest seeded hash, so the choice is deterministic and stable.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np
from kubetune.api.dataset import Balance

from kubetune_workloads.dataprep.records import Record

MISSING = "<missing>"
_WORD = re.compile(r"\w+")


class Balancer:
    """Labels records with their group."""

    def __init__(self, spec: Balance) -> None:
        self.spec = spec
        self.groups = {
            name: [tuple(t.lower().split()) for t in terms]
            for name, terms in (spec.term_groups or {}).items()
        }

    def label(self, record: Record) -> str:
        if self.spec.field:
            value = record.meta.get(self.spec.field)
            return MISSING if value is None or value == "" else str(value)
        words = _WORD.findall(record.text().lower())
        vocabulary = set(words)
        joined = f" {' '.join(words)} "
        hits = [
            name
            for name, terms in self.groups.items()
            if any(
                (t[0] in vocabulary) if len(t) == 1 else (f" {' '.join(t)} " in joined)
                for t in terms
            )
        ]
        if len(hits) == 1:
            return hits[0]
        return "mixed" if hits else "none"


def report(counts: Counter[str], targets: dict[str, float] | None = None) -> dict[str, Any]:
    """``{group: {count, proportion[, target]}}`` sorted by group name."""
    total = sum(counts.values())
    out: dict[str, Any] = {}
    for group in sorted(set(counts) | set(targets or {})):
        entry: dict[str, Any] = {
            "count": counts.get(group, 0),
            "proportion": round(counts.get(group, 0) / total, 4) if total else 0.0,
        }
        if targets and group in targets:
            entry["target"] = targets[group]
        out[group] = entry
    return out


def plan(counts: Counter[str], targets: dict[str, float]) -> dict[str, int]:
    """How many records of each group to keep so that proportions meet ``targets``."""
    targeted = {g: t for g, t in targets.items() if t > 0 and counts.get(g, 0) > 0}
    rest_share = max(0.0, 1.0 - sum(targets.values()))
    rest_count = sum(c for g, c in counts.items() if g not in targets)
    limits = [counts[g] / t for g, t in targeted.items()]
    if rest_share > 0 and rest_count:
        limits.append(rest_count / rest_share)
    if not limits:
        return dict(counts)
    size = min(limits)
    keep = {}
    for group, count in counts.items():
        if group in targets:
            keep[group] = min(count, math.floor(size * targets[group] + 1e-9))
        else:
            share = count / rest_count if rest_count else 0.0
            keep[group] = min(count, math.floor(size * rest_share * share + 1e-9))
    return keep


def select(labels: Sequence[str], fractions: np.ndarray, keep: dict[str, int]) -> np.ndarray:
    """Boolean mask keeping, per group, the ``keep[group]`` records with the smallest fraction."""
    labels_arr = np.asarray(labels, dtype=object)
    mask = np.zeros(len(labels), dtype=bool)
    for group, count in keep.items():
        idx = np.flatnonzero(labels_arr == group)
        if count >= idx.size:
            mask[idx] = True
        elif count > 0:
            order = np.argsort(fractions[idx], kind="stable")[:count]
            mask[idx[order]] = True
    return mask
