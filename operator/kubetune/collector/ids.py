"""The committed record ids of one loop's store, each with its commit time: a sharded index.

A Python dict rebuilds its whole table when it grows past a power of two, holding the
interpreter meanwhile: measured 88 ms at 1.4 million ids and ~150 ms at 2.8 million, a stall
of every commit (and of the p99 of bench/collector_throughput.py, whose rounds cross those
sizes). Here the ids are spread over ``SHARDS`` dicts by their hash, so each rebuild is 1/64
of that; the shards grow evenly, so their rebuilds fall on different commits. The price,
measured on 100-id batches against a 3-million-id index: ~90 us per look-up-and-insert of a
batch against ~45 us for one dict, in the committer (which has the CPU to spare).

Each shard keeps its ids in commit order, so retention drops each shard's oldest first.
"""

from __future__ import annotations

from collections.abc import Iterable

SHARDS = 64
_MASK = SHARDS - 1


class IdIndex:
    """Record id -> commit time (seconds since the epoch)."""

    def __init__(self) -> None:
        self.shards: list[dict[str, float]] = [{} for _ in range(SHARDS)]
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def __contains__(self, record_id: object) -> bool:
        return record_id in self.shards[hash(record_id) & _MASK]

    def isdisjoint(self, ids: Iterable[str]) -> bool:
        """Whether none of ``ids`` is in the index."""
        shard_of = self.shards.__getitem__
        ids = list(ids)
        return not any(map(dict.__contains__, map(shard_of, _slots(ids)), ids))

    def add(self, ids: Iterable[str], when: float) -> int:
        """Index ``ids`` not indexed yet, with the time ``when``; how many were new."""
        shard_of = self.shards.__getitem__
        ids = list(ids)
        added = 0
        for shard, record_id in zip(map(shard_of, _slots(ids)), ids, strict=True):
            if record_id not in shard:
                shard[record_id] = when
                added += 1
        self._count += added
        return added

    def add_new(self, ids: list[str], when: float) -> None:
        """``add`` of ids known to be new and distinct (a commit's): no look-up first."""
        shard_of = self.shards.__getitem__
        for shard, record_id in zip(map(shard_of, _slots(ids)), ids, strict=True):
            shard[record_id] = when
        self._count += len(ids)

    def trim(self, cutoff: float, max_ids: int) -> None:
        """Forget the ids committed before ``cutoff``, and the oldest beyond ``max_ids``
        (about ``max_ids / SHARDS`` per shard: the shards fill evenly)."""
        per_shard = max(1, max_ids // SHARDS)
        for shard in self.shards:
            while shard:
                first = next(iter(shard))
                if shard[first] >= cutoff and len(shard) <= per_shard:
                    break
                del shard[first]
                self._count -= 1


def _slots(ids: list[str]) -> list[int]:
    return [value & _MASK for value in map(hash, ids)]
