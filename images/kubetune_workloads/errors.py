"""Errors a step reports as a clear reason and message instead of a traceback."""

from __future__ import annotations


class WorkloadError(Exception):
    """A failure with a CamelCase reason (``InvalidInput``, ``NaNLoss``...) and a message."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message

    def __str__(self) -> str:
        return f"{self.reason}: {self.message}"


def invalid_input(message: str) -> WorkloadError:
    """The step's inputs are wrong; retrying will not help."""
    return WorkloadError("InvalidInput", message)
