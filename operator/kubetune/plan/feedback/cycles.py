"""Where each cycle of a FeedbackLoop stands, read from its collect Job and its resources.

A cycle moves through stages: ``Collecting`` (its ``feedback`` collect Job), then
``PreparingData``, ``Training``, ``PreparingPreferences``, ``PreferenceTuning``, ``Compressing``
and ``Evaluating`` (its Dataset, FinetuneJob, preference Dataset and FinetuneJob, Compression and
Evaluation; each present or not as the loop's spec and the collected feedback decide). It ends:

* ``Promoted``: every gate passed against the champion it was compared with;
* ``Rejected``: a gate failed (the champion stays), or, with ``promotion.approval: manual``,
  a person rejected it (annotation ``kubetune.dev/reject=cN``) or nobody approved it within
  ``promotion.approvalTimeoutSeconds``;
* ``Stale``: the gates passed, but another cycle was promoted meanwhile, so the comparison was
  against a champion that is no longer in production;
* ``NoNewFeedback``: nothing usable was collected, so nothing was trained;
* ``NoPreferenceFeedback``: a loop that trains ``instead-of-sft`` collected no pairs or ratings;
* ``Failed``: its collect Job or one of its resources failed (the reason names which and why).

With ``promotion.approval: manual`` a challenger whose gates passed stays in the stage
``AwaitingApproval`` (with an :class:`~kubetune.api.feedback.ApprovalRequest`: its report, the
feedback it learned from) until the annotation ``kubetune.dev/approve=cN`` promotes it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from kubetune.api.common import RunRecord
from kubetune.api.contract import ANNOTATION_APPROVE, ANNOTATION_REJECT
from kubetune.api.feedback import ApprovalRequest
from kubetune.api.resources import AnyResource, Evaluation, FeedbackLoop, FinetuneJob
from kubetune.api.steps import FEEDBACK_FILE
from kubetune.plan.feedback.children import (
    CYCLE_LABEL,
    challenger_role,
    cycle_id,
    cycle_name,
    cycle_of,
    feedback_settings,
    preference_name,
    role_of,
)
from kubetune.plan.feedback.preference import (
    PREFERENCE_COUNTS,
    PreferenceChoice,
    PreferenceCounts,
    choose,
    chosen_earlier,
)
from kubetune.plan.refs import Wait
from kubetune.plan.state import clip, job_state
from kubetune.plan.world import ObservedJob, ObservedWorld

ROLE_ORDER = (
    "Dataset",
    "FinetuneJob",
    "PreferenceDataset",
    "PreferenceFinetuneJob",
    "Compression",
    "Evaluation",
)
STAGE_OF_ROLE = {
    "Dataset": "PreparingData",
    "FinetuneJob": "Training",
    "PreferenceDataset": "PreparingPreferences",
    "PreferenceFinetuneJob": "PreferenceTuning",
    "Compression": "Compressing",
    "Evaluation": "Evaluating",
}
DONE_PHASES = {"Dataset": "Ready"}
RESULT_GRACE_SECONDS = 600.0
# What a preference FinetuneJob reports in status.results, copied into the cycle's record.
REWARD_RESULTS = ("rewardAccuracy", "rewardMargin", "evalRewardAccuracy", "evalRewardMargin")
APPROVE_ANNOTATION = ANNOTATION_APPROVE
REJECT_ANNOTATION = ANNOTATION_REJECT


@dataclass
class Champion:
    """The model in production and the model the next challenger trains from."""

    uri: str | None
    training_uri: str | None
    cycle: int | None
    wait: Wait | None = None


@dataclass(frozen=True)
class Cycle:
    """What exists of one cycle."""

    number: int
    collect: ObservedJob | None
    resources: dict[str, AnyResource]  # role (kind, or Preference<kind>) -> the resource

    @property
    def run_id(self) -> str:
        return cycle_id(self.number)


@dataclass(frozen=True)
class Stage:
    """An unfinished cycle: which step it is at, and what that step says."""

    reason: str  # Collecting, PreparingData, Training, Compressing, Evaluating, AwaitingApproval
    message: str
    needs_collect_job: bool = False  # no collect Job yet: create it
    needs_resources: bool = False  # the collect Job succeeded: create the missing resources
    approval: ApprovalRequest | None = None  # AwaitingApproval: what a person decides on


@dataclass(frozen=True)
class Finished:
    """A cycle that ended."""

    reason: str  # Promoted, Rejected, Stale, NoNewFeedback, Failed
    message: str
    failed: bool = False
    challenger: str | None = None  # URI of the evaluated model
    challenger_training: str | None = None  # URI of the FinetuneJob's model
    baseline: str | None = None  # the champion it was compared with
    results: dict[str, float] | None = None
    passed: bool = False
    start_time: datetime | None = None
    completion_time: datetime | None = None


def cycle_numbers(world: ObservedWorld) -> set[int]:
    """Every cycle with a collect Job or a resource in the world."""
    found = {n for n in (cycle_of(job.run_id) for job in world.jobs) if n is not None}
    for resource in world.owned.values():
        label = resource.metadata.labels.get(CYCLE_LABEL, "")
        if label.isdigit():
            found.add(int(label))
    return found


def observe_cycle(number: int, world: ObservedWorld) -> Cycle:
    """The collect Job and resources of cycle ``number``."""
    collect = next((j for j in world.jobs if j.run_id == cycle_id(number)), None)
    resources = {
        role_of(resource): resource
        for (_kind, _name), resource in sorted(world.owned.items())
        if resource.metadata.labels.get(CYCLE_LABEL) == str(number)
    }
    return Cycle(number, collect, resources)


def _collect_metrics(cycle: Cycle, loop: FeedbackLoop) -> dict[str, float] | None:
    """The metrics of the cycle's collect Job, if it succeeded and reported them."""
    if cycle.collect is None:
        return None
    state = job_state(cycle.collect, feedback_settings(loop.spec), None)
    if state.phase != "Succeeded" or state.result is None:
        return None
    return state.result.metrics


def collected_records(cycle: Cycle, loop: FeedbackLoop) -> int | None:
    """Usable records the cycle's collect Job reported, if it succeeded and said so."""
    used = (_collect_metrics(cycle, loop) or {}).get("usedRecords")
    return int(used) if used is not None else None


def cycle_choice(cycle: Cycle, loop: FeedbackLoop) -> PreferenceChoice | None:
    """The cycle's preference stage, from what its collect Job found (None: the loop has no
    ``training.preference``)."""
    metrics = _collect_metrics(cycle, loop)
    tuned = cycle.resources.get("PreferenceFinetuneJob")
    if metrics is None and isinstance(tuned, FinetuneJob) and tuned.spec.preference is not None:
        return chosen_earlier(loop.spec, tuned.spec.preference.algorithm)
    return choose(loop.spec, PreferenceCounts.from_metrics(metrics or {}))


def _is_current(resource: AnyResource) -> bool:
    status = resource.status
    return status is not None and status.observed_generation == resource.generation


def _done(resource: AnyResource) -> bool:
    status = resource.status
    wanted = DONE_PHASES.get(resource.kind, "Succeeded")
    return _is_current(resource) and status is not None and status.phase == wanted


def _failed(resource: AnyResource) -> bool:
    status = resource.status
    return _is_current(resource) and status is not None and status.phase == "Failed"


def _reason_of(resource: AnyResource) -> str:
    status = resource.status
    if status is None:
        return "Failed"
    done = next((c for c in status.conditions if c.type in ("Ready", "Succeeded")), None)
    return done.reason if done is not None and done.status == "False" else "Failed"


def assess(
    cycle: Cycle, loop: FeedbackLoop, champion: str | None, now: datetime
) -> Stage | Finished:
    """The stage of an unfinished cycle, or how it ended.

    ``champion`` is the champion right now: a challenger whose gates passed against another
    one is ``Stale``.
    """
    if not cycle.resources:
        return _assess_collect(cycle, loop)
    start = cycle.collect.start_time if cycle.collect is not None else None
    failed = _first_failed(cycle, loop, start)
    if failed is not None:
        return failed
    evaluation = cycle.resources.get("Evaluation")
    if isinstance(evaluation, Evaluation) and _done(evaluation):
        unjudged = _unjudged(evaluation, now)
        if unjudged is not None:
            return unjudged
        return _judge(cycle, loop, evaluation, champion, start, now)
    return _in_progress(cycle, loop)


def _first_failed(cycle: Cycle, loop: FeedbackLoop, start: datetime | None) -> Finished | None:
    """The cycle ended with the first of its resources that failed, if any."""
    for role in ROLE_ORDER:
        resource = cycle.resources.get(role)
        if resource is None or not _failed(resource):
            continue
        status = resource.status
        detail = status.message if status is not None and status.message else "failed"
        records = collected_records(cycle, loop)
        kind = resource.kind
        return Finished(
            f"{role}Failed",
            clip(f"{kind} {resource.name} failed: {_reason_of(resource)}: {detail}"),
            failed=True,
            # The records were collected: the trigger counts from this cycle on, so a
            # failing cycle is not retried on the same records in a loop.
            results={"records": float(records)} if records is not None else None,
            start_time=start,
            completion_time=status.completion_time if status is not None else None,
        )
    return None


def _in_progress(cycle: Cycle, loop: FeedbackLoop) -> Stage:
    """The first resource not done yet, or the first one still to create."""
    choice = cycle_choice(cycle, loop)
    expected = [r for r in ROLE_ORDER if _expected(r, loop, choice)]
    missing = [r for r in expected if r not in cycle.resources]
    for role in ROLE_ORDER:
        resource = cycle.resources.get(role)
        if resource is None or _done(resource):
            continue
        status = resource.status
        detail = status.message if status is not None and status.message else "starting"
        algorithm = f" ({choice.algorithm})" if role == "PreferenceFinetuneJob" and choice else ""
        return Stage(
            STAGE_OF_ROLE[role],
            clip(f"{resource.kind} {resource.name}{algorithm}: {detail}"),
            needs_resources=bool(missing),
        )
    role = missing[0] if missing else "Evaluation"
    kind = role.removeprefix("Preference")
    named = preference_name if role != kind else cycle_name
    name = named(loop, cycle.number)
    message = (
        f"creating {kind} {name} (if this lasts, a {kind} of that name that this loop does "
        "not own is in the way: delete or rename it)"
    )
    return Stage(STAGE_OF_ROLE[role], message, needs_resources=True)


def _expected(role: str, loop: FeedbackLoop, choice: PreferenceChoice | None) -> bool:
    """Whether the cycle has a resource of this role, as the spec and the feedback decide."""
    if role == "Compression":
        return loop.spec.compression is not None
    if role in ("Dataset", "FinetuneJob"):
        return choice is None or choice.trains_sft
    if role in ("PreferenceDataset", "PreferenceFinetuneJob"):
        return choice is not None and choice.algorithm is not None
    return True


def _assess_collect(cycle: Cycle, loop: FeedbackLoop) -> Stage | Finished:
    job = cycle.collect
    if job is None:
        return Stage("Collecting", "creating the collect Job", needs_collect_job=True)
    state = job_state(job, feedback_settings(loop.spec), None)
    if state.phase == "Failed":
        return Finished(
            "CollectFailed",
            clip(f"collecting feedback failed: {state.reason}: {state.message}"),
            failed=True,
            start_time=state.start_time,
            completion_time=state.completion_time,
        )
    if state.phase != "Succeeded":
        return Stage("Collecting", clip(f"Job {job.name}: {state.message}"))
    used = collected_records(cycle, loop)
    choice = cycle_choice(cycle, loop)
    if used == 0 or (choice is not None and choice.algorithm is None and not choice.trains_sft):
        reason, why = "NoNewFeedback", "no usable feedback records since the champion was trained"
        if used != 0 and choice is not None:
            reason, why = "NoPreferenceFeedback", choice.why
        return Finished(
            reason,
            f"{why}; nothing to retrain" if reason == "NoNewFeedback" else why,
            start_time=state.start_time,
            completion_time=state.completion_time,
            results={"records": float(used or 0)},
        )
    message = f"collected {used} feedback records"
    if choice is not None:
        message += f"; preference: {choice.summary()}"
    first = "PreparingData" if choice is None or choice.trains_sft else "PreparingPreferences"
    return Stage(first, message, needs_resources=True)


def _unjudged(evaluation: Evaluation, now: datetime) -> Stage | Finished | None:
    """An Evaluation that succeeded without a gate verdict (its pod's result not read yet).

    The loop's evaluation always has gates, so ``passed`` is missing only while the result is
    on its way (a Job seen complete before its Pod); waiting a while is right, judging is not.
    """
    status = evaluation.status
    if status is None or status.passed is not None:
        return None
    finished = status.completion_time
    if finished is not None and (now - finished).total_seconds() > RESULT_GRACE_SECONDS:
        return Finished(
            "EvaluationFailed",
            f"Evaluation {evaluation.name} succeeded without a gate verdict",
            failed=True,
            completion_time=finished,
        )
    return Stage("Evaluating", f"Evaluation {evaluation.name}: waiting for its gate verdict")


def _judge(
    cycle: Cycle,
    loop: FeedbackLoop,
    evaluation: Evaluation,
    champion: str | None,
    start: datetime | None,
    now: datetime,
) -> Finished | Stage:
    status = evaluation.status
    assert status is not None
    baseline = evaluation.spec.baseline.uri if evaluation.spec.baseline is not None else None
    results = dict(status.results or {})
    records = collected_records(cycle, loop)
    if records is not None:
        results["records"] = float(records)
    results |= _preference_results(cycle, loop)
    trained = cycle.resources.get("PreferenceFinetuneJob") or cycle.resources.get("FinetuneJob")
    base = Finished(
        "Rejected",
        "",
        challenger=_output_of(cycle.resources.get(challenger_role(loop, cycle.resources))),
        challenger_training=_output_of(trained),
        baseline=baseline,
        results=results or None,
        start_time=start,
        completion_time=status.completion_time,
    )
    choice = cycle_choice(cycle, loop)
    trained_with = f" (trained: {choice.summary()})" if choice is not None else ""
    if status.passed is not True:
        gates = ", ".join(status.failed_gates or []) or "no gate passed"
        message = f"challenger not promoted: failed gates: {gates}{trained_with}"
        return replace(base, message=message)
    if baseline != champion:
        message = "the gates passed against a champion that has since been replaced"
        return replace(base, reason="Stale", message=f"{message}; not promoted")
    if base.challenger is None or base.challenger_training is None:
        return replace(
            base, reason="Failed", message="the challenger has no output URI", failed=True
        )
    message = f"challenger {base.challenger} promoted{trained_with}"
    promoted = replace(base, reason="Promoted", message=message, passed=True)
    if loop.spec.promotion.approval == "manual":
        return _approval(cycle, loop, evaluation, promoted, now)
    return promoted


def _approval(
    cycle: Cycle, loop: FeedbackLoop, evaluation: Evaluation, promoted: Finished, now: datetime
) -> Finished | Stage:
    """A challenger that passed: promoted once approved, rejected, timed out, or waiting."""
    run = cycle.run_id
    annotations = loop.metadata.annotations
    if annotations.get(REJECT_ANNOTATION) == run:
        message = f"challenger rejected by {REJECT_ANNOTATION}={run} (its gates had passed)"
        return replace(promoted, reason="Rejected", message=message, passed=False)
    if annotations.get(APPROVE_ANNOTATION) == run:
        message = f"challenger {promoted.challenger} promoted: approved ({APPROVE_ANNOTATION})"
        return replace(promoted, message=message)
    status = evaluation.status
    assert status is not None
    since = status.completion_time
    timeout = loop.spec.promotion.approval_timeout_seconds
    deadline = since + timedelta(seconds=timeout) if since and timeout else None
    if deadline is not None and now >= deadline:
        message = f"challenger not approved within {timeout}s of its evaluation: rejected"
        return replace(promoted, reason="Rejected", message=message, passed=False)
    request = ApprovalRequest(
        run_id=run,
        challenger=promoted.challenger,
        evaluation=evaluation.name,
        report_uri=status.report_uri,
        feedback_uri=_feedback_uri(cycle, loop),
        results=promoted.results,
        since=since,
        deadline=deadline,
    )
    name = loop.name
    message = (
        f"the challenger passed its gates; approve: kubectl annotate ktfl/{name} "
        f"{APPROVE_ANNOTATION}={run} (or reject: {REJECT_ANNOTATION}={run})"
    )
    if status.report_uri:
        message += f"; report: {status.report_uri}"
    return Stage("AwaitingApproval", message, approval=request)


def _feedback_uri(cycle: Cycle, loop: FeedbackLoop) -> str | None:
    """The collected feedback (feedback.jsonl) the challenger was trained on."""
    if cycle.collect is None:
        return None
    state = job_state(cycle.collect, feedback_settings(loop.spec), None)
    if state.result is None or not state.result.output_uri:
        return None
    return f"{state.result.output_uri.rstrip('/')}/{FEEDBACK_FILE}"


def _preference_results(cycle: Cycle, loop: FeedbackLoop) -> dict[str, float]:
    """The preference stage's record counts and its reward accuracy and margins."""
    metrics = _collect_metrics(cycle, loop) or {}
    found = {k: metrics[k] for k in PREFERENCE_COUNTS if k in metrics}
    job = cycle.resources.get("PreferenceFinetuneJob")
    if job is not None and job.status is not None:
        trained = job.status.results or {}
        found |= {k: trained[k] for k in REWARD_RESULTS if k in trained}
    return found


def _output_of(resource: AnyResource | None) -> str | None:
    if resource is None or resource.status is None:
        return None
    return resource.status.output_uri


def record_of(cycle: Cycle, loop: FeedbackLoop, outcome: Finished, now: datetime) -> RunRecord:
    """The status.history entry of a finished cycle."""
    return RunRecord(
        run_id=cycle.run_id,
        generation=loop.generation,
        phase="Failed" if outcome.failed else "Succeeded",
        reason=outcome.reason,
        message=outcome.message,
        start_time=outcome.start_time,
        completion_time=outcome.completion_time or now,
        output_uri=outcome.challenger,
        results=outcome.results,
    )
