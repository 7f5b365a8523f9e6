"""A stopped clock for the planners in operator tests: it moves only when told to."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta


class Clock:
    """A stopped clock for the planners; :meth:`advance` moves it."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC).replace(microsecond=0)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)
