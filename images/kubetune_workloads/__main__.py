"""Entry point: ``python -m kubetune_workloads <step> --spec FILE``.

Dispatches through the step registry (:mod:`kubetune_workloads.steps`) to the step's one entry,
``kubetune_workloads/<step>/main.py: run(spec) -> StepResult``. Whatever happens, the step
ends with a :class:`kubetune.api.steps.StepResult` written to the termination log (the pod's
termination message) and a non-zero exit code on failure.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import traceback
from pathlib import Path

from kubetune.api.contract import RESULT_LINE_PREFIX, TERMINATION_LOG, TERMINATION_LOG_ENV
from kubetune.api.steps import StepName, StepResult, parse_step_spec

from kubetune_workloads.errors import WorkloadError
from kubetune_workloads.steps import STEP_MODULES, entry_point, exit_code

__all__ = ["STEP_MODULES", "main", "run_step", "write_result"]
log = logging.getLogger("kubetune_workloads")


def termination_log_path() -> Path | None:
    """Where the summary goes: $KUBETUNE_TERMINATION_LOG, else the Kubernetes default."""
    configured = os.environ.get(TERMINATION_LOG_ENV)
    if configured:
        return Path(configured)
    default = Path(TERMINATION_LOG)
    return default if default.parent.exists() and os.access(default.parent, os.W_OK) else None


def write_result(result: StepResult) -> None:
    """The summary to the termination log and, as one prefixed line, to stdout."""
    path = termination_log_path()
    text = result.termination_message()
    if path is not None:
        try:
            path.write_text(text)
        except OSError as exc:  # a read-only /dev is not a reason to lose the result
            log.warning("cannot write termination log %s: %s", path, exc)
    print(f"{RESULT_LINE_PREFIX} {text}", flush=True)


def run_step(step: StepName, spec_path: Path) -> StepResult:
    """Run one step and always return a result (never raise)."""
    try:
        text = spec_path.read_text()
    except OSError as exc:
        return StepResult(step=step, ok=False, reason="SpecUnreadable", message=str(exc))
    try:
        spec = parse_step_spec(text)
    except ValueError as exc:
        return StepResult(step=step, ok=False, reason="InvalidSpec", message=str(exc)[:2000])
    if spec.step != step:
        return StepResult(
            step=step,
            ok=False,
            reason="InvalidSpec",
            message=f"spec is for step {spec.step!r}, not {step!r}",
        )
    try:
        return entry_point(step)(spec)
    except WorkloadError as exc:
        log.error("%s failed: %s", step, exc)
        return StepResult(step=spec.step, ok=False, reason=exc.reason, message=exc.message)
    except KeyboardInterrupt:
        return StepResult(step=spec.step, ok=False, reason="Interrupted", message="interrupted")
    except MemoryError:
        return StepResult(step=spec.step, ok=False, reason="OutOfMemory", message="out of memory")
    except Exception as exc:
        traceback.print_exc()
        last = f"{type(exc).__name__}: {exc}".strip()
        return StepResult(step=spec.step, ok=False, reason="InternalError", message=last[:2000])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kubetune_workloads")
    parser.add_argument("step", choices=sorted(STEP_MODULES))
    parser.add_argument("--spec", required=True, type=Path, help="step spec JSON file")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=os.environ.get("KUBETUNE_LOG_LEVEL", "INFO"),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    result = run_step(args.step, args.spec)
    write_result(result)
    return exit_code(result)  # 2 tells the Job's podFailurePolicy that retrying cannot help


if __name__ == "__main__":
    sys.exit(main())
