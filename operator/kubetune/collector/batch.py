"""A request's valid records as the store writes them: their ids, and their lines joined.

The lines travel joined from the HTTP worker that validated them to the segment that stores
them (over the committer's socket, through a group commit, into one append), and are split
only where one record must be told from another: when some ids are committed already, or
twice in the batch. Measured with bench/collector_throughput.py: a list of (id, line) pairs,
zipped, unzipped and joined again at each step, was ~10% of the CPU of a request.

Each line is ASCII JSON that ends with its only newline (its strings' newlines are escaped),
so ``data.splitlines(keepends=True)`` gives the lines back.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["Batch"]


@dataclass(frozen=True, slots=True)
class Batch:
    """Records in order: ``ids[i]`` is the id of the i-th line of ``data``."""

    ids: list[str]
    data: bytes

    @classmethod
    def of(cls, records: Iterable[tuple[str, bytes]]) -> Batch:
        """The batch of (id, line) records."""
        pairs = list(records)
        return cls([record_id for record_id, _ in pairs], b"".join([line for _, line in pairs]))

    @classmethod
    def joined(cls, batches: list[Batch]) -> Batch:
        """The records of ``batches``, one after the other."""
        if len(batches) == 1:
            return batches[0]
        ids: list[str] = []
        for batch in batches:
            ids += batch.ids
        return cls(ids, b"".join([batch.data for batch in batches]))

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def size(self) -> int:
        """The bytes of the lines."""
        return len(self.data)

    def lines(self) -> list[bytes]:
        return self.data.splitlines(keepends=True)

    def records(self) -> list[tuple[str, bytes]]:
        """(id, line) of each record; ValueError when the lines are not one per id."""
        return list(zip(self.ids, self.lines(), strict=True))

    def is_whole(self) -> bool:
        """Whether ``data`` is one newline-ended line per id (what a frame must hold)."""
        data = self.data
        return data.count(b"\n") == len(self.ids) and data.endswith(b"\n") and b"\r" not in data
