"""Where a run stands, read from its observed Job and pods.

The result is a :class:`RunState`: a phase, a CamelCase reason and a message precise enough to
act on (``OOMKilled``, ``ImagePullBackOff``, ``Unschedulable``, ``DeadlineExceeded``,
``BackoffLimitExceeded`` or the workload's own reason such as ``NaNLoss``), plus the parsed
:class:`~kubetune.api.steps.StepResult` of a finished run.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from kubetune.api.common import Phase, RunSettings
from kubetune.api.steps import LiveProgress, StepResult, parse_step_result
from kubetune.plan.runs import JOB_FAILED_CONDITIONS, JOB_SUCCEEDED_CONDITIONS
from kubetune.plan.world import ObservedJob, ObservedPod

MAX_MESSAGE = 1024
# Waiting reasons of a container that will not start on its own.
STUCK_REASONS = (
    "ImagePullBackOff",
    "ErrImagePull",
    "InvalidImageName",
    "CreateContainerConfigError",
    "CreateContainerError",
)
TERMINAL = ("Succeeded", "Failed", "Ready")


@dataclass(frozen=True)
class RunState:
    """The state of the current run."""

    phase: Phase
    reason: str
    message: str
    warning: bool = False  # something a user should look at (a Warning event)
    result: StepResult | None = None
    start_time: datetime | None = None
    completion_time: datetime | None = None

    @property
    def terminal(self) -> bool:
        return self.phase in TERMINAL


def clip(text: str, limit: int = MAX_MESSAGE) -> str:
    """A message cut to ``limit`` characters."""
    text = text.strip()
    return text if len(text) <= limit else text[: limit - 3] + "..."


def last_line(text: str | None) -> str | None:
    """The last non-empty line of a text (a log tail), if any."""
    if not text:
        return None
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else None


def _condition(job: ObservedJob, *types: str) -> dict[str, str] | None:
    for cond in job.conditions:
        if cond.get("type") in types and cond.get("status") == "True":
            return {k: str(v) for k, v in cond.items()}
    return None


def _by_start(pods: tuple[ObservedPod, ...]) -> list[ObservedPod]:
    return sorted(pods, key=lambda p: (p.start_time is None, p.start_time or datetime.min))


def _result_of(pods: list[ObservedPod]) -> StepResult | None:
    for pod in reversed(pods):
        if pod.termination_message:
            result = parse_step_result(pod.termination_message)
            if result is not None:
                return result
    return None


def _failure(job: ObservedJob, cond: dict[str, str]) -> tuple[str, str]:
    """The precise reason and message of a failed Job."""
    failed = _by_start(tuple(p for p in job.pods if p.phase == "Failed"))
    latest = failed[-1] if failed else None
    job_reason = cond.get("reason") or "Failed"
    job_message = cond.get("message", "")
    log_line = last_line(latest.termination_message) if latest else None
    if latest is not None and latest.last_log_line:
        log_line = latest.last_log_line
    if job_reason == "DeadlineExceeded":
        detail = f"; last log line: {log_line}" if log_line else ""
        return job_reason, clip(f"{job_message or 'the run exceeded its deadline'}{detail}")
    if latest is not None and latest.terminated_reason == "OOMKilled":
        return "OOMKilled", clip(
            f"container {latest.name} was killed for exceeding its memory limit "
            f"(exit code {latest.exit_code}); raise resources.memory or lower the batch size"
        )
    result = _result_of(failed)
    if result is not None and not result.ok:
        return result.reason, clip(result.message or job_message)
    if log_line:
        reason = job_reason if job_reason != "PodFailurePolicy" else "Error"
        return reason, clip(log_line)
    return job_reason, clip(job_message or "the Job failed")


def _stuck(pods: tuple[ObservedPod, ...]) -> tuple[str, str] | None:
    for pod in pods:
        if pod.waiting_reason in STUCK_REASONS:
            return pod.waiting_reason, clip(pod.waiting_message or pod.waiting_reason)
    for pod in pods:
        if pod.unschedulable_message:
            return "Unschedulable", clip(pod.unschedulable_message)
    return None


def progress_message(progress: LiveProgress | None) -> str:
    """A one-line summary of live progress."""
    if progress is None:
        return "running"
    parts = [f"step {progress.step}" + (f"/{progress.total_steps}" if progress.total_steps else "")]
    if progress.loss is not None:
        parts.append(f"loss {progress.loss:.4g}")
    if progress.eta_seconds is not None:
        parts.append(f"eta {round(progress.eta_seconds)}s")
    if progress.message:
        parts.append(progress.message)
    return ", ".join(parts)


def job_state(job: ObservedJob, settings: RunSettings, progress: LiveProgress | None) -> RunState:
    """The state of a run whose Job exists."""

    def state(
        phase: Phase,
        reason: str,
        message: str,
        warning: bool = False,
        result: StepResult | None = None,
    ) -> RunState:
        return RunState(
            phase, reason, message, warning, result, job.start_time, job.completion_time
        )

    pods = tuple(_by_start(job.pods))
    nodes = settings.resources.nodes
    done = _condition(job, *JOB_SUCCEEDED_CONDITIONS)
    if done is not None or (not job.conditions and job.succeeded >= nodes and job.active == 0):
        result = _result_of([p for p in pods if p.phase == "Succeeded"])
        message = result.message if result is not None and result.message else "completed"
        return state("Succeeded", "Completed", clip(message), result=result)
    failed = _condition(job, *JOB_FAILED_CONDITIONS)
    if failed is not None:
        reason, message = _failure(job, failed)
        return state("Failed", reason, message, warning=True)
    if job.suspended:
        if settings.suspend:
            return state("Suspended", "Suspended", "the run is suspended")
        queue = settings.resources.queue_name
        if queue:
            return state("Pending", "Queued", f"waiting for admission by queue {queue}")
        return state("Pending", "Resuming", "resuming the suspended Job")
    if settings.suspend:
        return state("Suspended", "Suspending", "suspending the Job")
    stuck = _stuck(pods)
    if stuck is not None:
        return state("Pending", stuck[0], stuck[1], warning=True)
    retry = ""
    if job.failed:
        reason, message = _failure(job, {"reason": "PodFailed"})
        retry = f" (retry {job.failed} of {settings.retry.backoff_limit} after {reason}: {message})"
    if any(p.phase == "Running" for p in pods):
        return state("Running", "Running", clip(progress_message(progress) + retry))
    if job.start_time is not None and any(p.phase == "Succeeded" for p in pods):
        # The pod finished; the Job controller has not marked the Job complete yet.
        return state("Running", "Running", clip(f"finishing Job {job.name}{retry}"))
    return state("Pending", "Starting", clip(f"starting Job {job.name}{retry}"))
