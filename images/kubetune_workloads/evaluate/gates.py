"""Gates: pass/fail rules on aggregate metrics (min, max, maxRegression vs the baseline)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from kubetune.api.evaluation import Gate

from kubetune_workloads.evaluate.stats import regression

EPSILON = 1e-12


@dataclass
class GateResult:
    """One checked rule. ``name`` reads like the rule, e.g. ``exactMatch>=0.8``."""

    name: str
    metric: str
    passed: bool
    value: float | None
    message: str

    def wire(self) -> dict[str, object]:
        return {
            "name": self.name,
            "metric": self.metric,
            "passed": self.passed,
            "value": self.value,
            "message": self.message,
        }


def _fmt(x: float) -> str:
    return f"{x:.4g}"


def check_gates(
    gates: list[Gate],
    candidate: Mapping[str, float],
    baseline: Mapping[str, float] | None,
) -> list[GateResult]:
    """Every rule of every gate, checked against candidate (and baseline) aggregate means."""
    results: list[GateResult] = []
    for gate in gates:
        value = candidate.get(gate.metric)
        rules: list[tuple[str, float | None, bool]] = []
        if gate.min is not None:
            name = f"{gate.metric}>={_fmt(gate.min)}"
            rules.append((name, value, value is not None and value >= gate.min - EPSILON))
        if gate.max is not None:
            name = f"{gate.metric}<={_fmt(gate.max)}"
            rules.append((name, value, value is not None and value <= gate.max + EPSILON))
        for name, got, passed in rules:
            shown = "no value" if got is None else _fmt(got)
            results.append(GateResult(name, gate.metric, passed, got, f"{name}: got {shown}"))
        if gate.max_regression is not None:
            results.append(_regression_gate(gate, value, baseline))
    return results


def _regression_gate(
    gate: Gate, value: float | None, baseline: Mapping[str, float] | None
) -> GateResult:
    limit = gate.max_regression or 0.0
    name = f"{gate.metric}:maxRegression={_fmt(limit)}"
    base = None if baseline is None else baseline.get(gate.metric)
    if value is None or base is None:
        return GateResult(name, gate.metric, False, None, f"{name}: no candidate or baseline value")
    worse = regression(gate.metric, value, base)
    passed = worse <= limit + EPSILON
    message = f"{name}: candidate {_fmt(value)} vs baseline {_fmt(base)} (regression {_fmt(worse)})"
    return GateResult(name, gate.metric, passed, worse, message)


def skipped_gate(max_ratio: float | None, left_out: int, total: int) -> list[GateResult]:
    """``skipped<=R``: the share of cases left out of the verdict (``maxSkippedRatio``)."""
    if max_ratio is None:
        return []
    ratio = left_out / total if total else 0.0
    name = f"skipped<={_fmt(max_ratio)}"
    passed = ratio <= max_ratio + EPSILON
    message = f"{name}: {left_out} of {total} cases left out of the verdict ({_fmt(ratio)})"
    return [GateResult(name, "skipped", passed, ratio, message)]
