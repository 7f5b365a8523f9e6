"""Small readers for values in a StepResult's free-form ``details`` and ``metrics``."""

from __future__ import annotations

from typing import Any

from kubetune.api.steps import StepResult


def lookup(result: StepResult, *keys: str) -> Any:
    """The first of ``keys`` found in the result's details, then its metrics."""
    for source in (result.details or {}, result.metrics):
        for key in keys:
            if source.get(key) is not None:
                return source[key]
    return None


def as_int(value: Any) -> int | None:
    """An integer, or None for anything that is not a number."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return int(value)


def as_float(value: Any) -> float | None:
    """A float, or None for anything that is not a number."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)
