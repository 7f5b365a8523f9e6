"""Apply the Compression's steps to the working model, in the order given."""

from __future__ import annotations

from collections.abc import Callable

from kubetune.api.compression import CompressionStep

from kubetune_workloads.compress import merge, prune, quantize, shrink
from kubetune_workloads.compress.state import WorkingModel
from kubetune_workloads.errors import invalid_input


def step_name(step: CompressionStep) -> str:
    """``mergeAdapter``, ``quantize`` or ``prune``; refuses a step with zero or several set."""
    names = [
        name
        for name, value in (
            ("mergeAdapter", step.merge_adapter),
            ("quantize", step.quantize),
            ("prune", step.prune),
        )
        if value is not None
    ]
    if len(names) != 1:
        raise invalid_input(
            f"each step sets exactly one of mergeAdapter, quantize or prune (got {names or 'none'})"
        )
    return names[0]


def apply_step(working: WorkingModel, step: CompressionStep) -> WorkingModel:
    name = step_name(step)
    if name == "mergeAdapter":
        assert step.merge_adapter is not None
        return merge.merge_adapter(working, step.merge_adapter)
    if name == "quantize":
        assert step.quantize is not None
        return quantize.quantize(working, step.quantize)
    assert step.prune is not None
    return prune.prune_model(working, step.prune)


def preflight(working: WorkingModel, steps: list[CompressionStep]) -> None:
    """Refuse an impossible step list before any expensive work (same errors as the steps)."""
    has_adapter, quantized = working.has_adapter, working.is_quantized
    for step in steps:
        name = step_name(step)
        if name == "mergeAdapter":
            merge.check(has_adapter, quantized)
            has_adapter = False
        elif name == "quantize":
            quantize.check(has_adapter, quantized)
            quantized = True
        else:
            assert step.prune is not None
            prune.check(step.prune, has_adapter, quantized)
            if working.has_adapter:
                continue  # layers are wrapped by the adapter until merged; checked when run
            if step.prune.method == "structured" and step.prune.granularity != "rows":
                shrink.check_supported(working.model, step.prune.granularity)
            else:
                prune.select_linear(working.model, step.prune.target_modules)


def apply_steps(
    working: WorkingModel,
    steps: list[CompressionStep],
    on_step: Callable[[int, str], None] | None = None,
) -> WorkingModel:
    """Run each step in order; ``on_step(index, name)`` is called before each one."""
    for index, step in enumerate(steps):
        if on_step is not None:
            on_step(index, step_name(step))
        working = apply_step(working, step)
    return working
