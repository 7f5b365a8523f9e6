"""The ``compress`` step: merge adapters, quantize with bitsandbytes, prune, and report.

``run(spec)`` loads the input model, measures it, applies the Compression's steps in the order
given, writes the compressed HF-format model (manifest last) and an honest before/after report
(``report.json``, ``report.md``, model card), and returns the :class:`StepResult` summary.
"""

from __future__ import annotations

from kubetune_workloads.compress.main import run

__all__ = ["run"]
