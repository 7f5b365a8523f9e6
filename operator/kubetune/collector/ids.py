"""The committed record ids of one loop's store: sharded sets, and a log of when each came in.

A Python set (or dict) grows by rebuilding its whole table, holding the interpreter meanwhile:
measured for one set ~60 ms at 1.25 million ids, ~110 ms at 2.5 million, ~260 ms at 5 million,
a stall of every commit. Here the ids are spread over ``SHARDS`` sets by their hash, so each
rebuild is 1/16 of that; the shards grow evenly, so their rebuilds fall on different commits.

Sets rather than dicts of id -> commit time: a set's table is smaller, so a look-up misses
the CPU's caches less. Measured on 100-id batches against a 2.6-million-id index: ~40-50 us
per look-up of a batch and ~37 us per insert, where the 64 dicts before took ~120 and ~82 us.
A set is a container the garbage collector traverses (a dict of strings and floats is not): a
full collection took ~190 ms more with 2.6 million ids in sets, so the process that holds an
index takes it out of the collections (``gc.freeze``, see
:meth:`kubetune.collector.commits.LoopWriter.start`).

Retention needs each id's commit time: :attr:`IdIndex.log` holds, in order of arrival, each
commit's (or each segment read's) time and the ids it added (a tuple of strings, which the
garbage collector stops tracking), so trimming drops whole entries from the left and their ids
from the shards. An id is in one entry only (it is logged when it enters the index).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Sequence
from typing import Any

SHARDS = 16
_MASK = SHARDS - 1
_drain: Callable[[Iterable[Any]], None] = deque(maxlen=0).extend  # runs an iterator out, in C


def slots(ids: Sequence[str]) -> list[int]:
    """The shard of each id (for ``isdisjoint`` and ``add_new`` of the same ids)."""
    return [value & _MASK for value in map(hash, ids)]


class IdIndex:
    """Record ids committed, each with the time it was committed (in :attr:`log`)."""

    def __init__(self) -> None:
        self.shards: list[set[str]] = [set() for _ in range(SHARDS)]
        self.log: deque[tuple[float, tuple[str, ...]]] = deque()  # (time, the ids it added)
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def __contains__(self, record_id: object) -> bool:
        return record_id in self.shards[hash(record_id) & _MASK]

    def isdisjoint(self, ids: Sequence[str], where: list[int] | None = None) -> bool:
        """Whether none of ``ids`` is in the index (``where``: their ``slots``, if known)."""
        shards = map(self.shards.__getitem__, slots(ids) if where is None else where)
        return not any(map(set.__contains__, shards, ids))

    def add(self, ids: Iterable[str], when: float) -> int:
        """Index ``ids`` not indexed yet, with the time ``when``; how many were new."""
        distinct = list(dict.fromkeys(ids))
        shards = map(self.shards.__getitem__, slots(distinct))
        fresh = [
            record_id
            for shard, record_id in zip(shards, distinct, strict=True)
            if record_id not in shard
        ]
        if fresh:
            self.add_new(fresh, when)
        return len(fresh)

    def add_new(self, ids: Sequence[str], when: float, where: list[int] | None = None) -> None:
        """``add`` of ids known to be new and distinct (a commit's): no look-up first."""
        shards = map(self.shards.__getitem__, slots(ids) if where is None else where)
        _drain(map(set.add, shards, ids))
        self.log.append((when, tuple(ids)))
        self._count += len(ids)

    def trim(self, cutoff: float, max_ids: int) -> None:
        """Forget the ids committed before ``cutoff``, then the oldest while there are more
        than ``max_ids`` (a whole log entry at a time: a commit's ids, a segment's)."""
        log = self.log
        while log and (log[0][0] < cutoff or self._count > max_ids):
            ids = log.popleft()[1]
            _drain(map(set.discard, map(self.shards.__getitem__, slots(ids)), ids))
            self._count -= len(ids)
