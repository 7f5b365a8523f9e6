"""The local layer's part of each kind: what `kubetune run` does differently for it.

The generic modules of :mod:`kubetune.local` (the runner, the view) look a kind up in
:data:`LOCAL_KINDS` and never name one; a kind with nothing special gets the defaults of
:class:`LocalKind`. The table is built with :func:`kubetune.api.kinds.per_kind`, so a registered
kind missing here fails at import (tests/unit/test_kind_registry.py checks it too).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from kubetune.api.kinds import per_kind
from kubetune.local.dataset_inputs import rerun_changed_inputs
from kubetune.local.feedback_checks import PeriodicChecks, forget_finished_counts, loop_done
from kubetune.local.feedback_view import loop_lines
from kubetune.local.store import LocalState, StoredResource

# status -> True or False when the kind decides whether a local run is done with it; None leaves
# it to the phase (Ready or Succeeded).
DoneRule = Callable[[Mapping[str, Any]], bool | None]
# (body, now, workdir of the run) -> the lines its summary shows instead of
# ``artifact: <outputUri>``
SummaryLines = Callable[[dict[str, Any], datetime | None, Path | None], list[str]]


class ChildFilter(Protocol):
    """One run's say on a kind's planned children: whether to create one now."""

    def allow(self, owner: StoredResource, child: dict[str, Any]) -> bool: ...


def phase_decides(status: Mapping[str, Any]) -> bool | None:
    """The default done rule: nothing of its own, the phase decides."""
    return None


@dataclass(frozen=True)
class LocalKind:
    """What the local runtime does differently for one kind."""

    done: DoneRule = phase_decides
    summary_lines: SummaryLines | None = None
    # A new filter for each run (e.g. periodic checks let through once per run).
    child_filter: Callable[[], ChildFilter] | None = None
    # Called on the state when manifests are applied, i.e. before each `kubetune run`.
    at_apply: Callable[[LocalState], object] | None = None


PLAIN = LocalKind()

# The local layer's registration: one entry per kind of kubetune.api.kinds.
LOCAL_KINDS: dict[str, LocalKind] = per_kind(
    "kubetune.local.kinds.LOCAL_KINDS",
    {
        "Dataset": LocalKind(at_apply=rerun_changed_inputs),
        "FinetuneJob": PLAIN,
        "Compression": PLAIN,
        "Evaluation": PLAIN,
        "FeedbackLoop": LocalKind(
            done=loop_done,
            summary_lines=loop_lines,
            child_filter=PeriodicChecks,
            at_apply=forget_finished_counts,
        ),
    },
)


def local_kind(kind: str) -> LocalKind:
    """The local layer's entry of ``kind`` (the defaults for a kind it does not know)."""
    return LOCAL_KINDS.get(kind, PLAIN)


class ChildFilters:
    """The child filters of one run, one per kind that has one."""

    def __init__(self) -> None:
        self._by_kind = {
            kind: entry.child_filter()
            for kind, entry in LOCAL_KINDS.items()
            if entry.child_filter is not None
        }

    def allow(self, owner: StoredResource, child: dict[str, Any]) -> bool:
        found = self._by_kind.get(owner.kind)
        return found is None or found.allow(owner, child)


def at_apply(state: LocalState) -> None:
    """Every kind's step before a run (after its manifests are applied)."""
    for entry in LOCAL_KINDS.values():
        if entry.at_apply is not None:
            entry.at_apply(state)
