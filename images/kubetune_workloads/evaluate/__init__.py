"""The evaluate step: score a candidate (and a baseline) on prompt cases, gate, report.

``run(spec)`` (:mod:`.main`, the step's entry point) gathers the cases, checks every metric
can score them, runs the candidate (and the baseline) over them, aggregates with bootstrap
intervals, compares, applies the gates and bias probes, and writes ``results.json``,
``cases.jsonl`` and ``report.html`` (manifest last).
The step succeeds whenever the evaluation ran; whether the model passed is ``passed``.
"""

from __future__ import annotations

from kubetune_workloads.evaluate.main import run

__all__ = ["run"]
