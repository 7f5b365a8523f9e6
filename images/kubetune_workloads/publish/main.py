"""The ``publish`` step: publish a complete artifact to each target, or promote an alias.

Mode ``publish`` reads the artifact (refusing one without its manifest or with another content
hash than the operator resolved), then publishes it to MLflow, the OCI registry and the Hub, in
that order, each independently: one target failing does not stop the others. Mode ``promote``
moves ``champion`` (MLflow alias, OCI tag) to versions published earlier. The result carries
one :class:`~kubetune.api.publish.PublishTargetStatus` per target in ``details.publish``; the
step fails, with the first failure's reason, when any target failed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from kubetune.api.publish import PublishTargetStatus
from kubetune.api.steps import PublishStepSpec, StepResult

from kubetune_workloads import storage
from kubetune_workloads.errors import WorkloadError
from kubetune_workloads.publish import huggingface, mlflow_registry, oci
from kubetune_workloads.publish.artifact import Artifact, open_artifact

log = logging.getLogger("kubetune_workloads.publish")
Action = Callable[[], PublishTargetStatus]


def _publish_actions(spec: PublishStepSpec, artifact: Artifact) -> list[tuple[str, str, Action]]:
    targets = spec.publish
    actions: list[tuple[str, str, Action]] = []
    if targets.mlflow is not None:
        mlflow = targets.mlflow
        actions.append(("mlflow", mlflow.model_name,
                        lambda: mlflow_registry.publish(mlflow, spec, artifact)))  # fmt: skip
    if targets.oci is not None:
        registry = targets.oci
        actions.append(("oci", registry.reference, lambda: oci.publish(registry, spec, artifact)))
    if targets.huggingface is not None:
        hub = targets.huggingface
        actions.append(("huggingface", hub.repo, lambda: huggingface.publish(hub, spec, artifact)))
    return actions


def _promote_actions(spec: PublishStepSpec) -> list[tuple[str, str, Action]]:
    request = spec.promote
    if request is None:
        raise WorkloadError("InvalidInput", "mode promote needs spec.promote")
    targets = spec.publish
    actions: list[tuple[str, str, Action]] = []
    if targets.mlflow is not None:
        mlflow = targets.mlflow
        actions.append(("mlflow", mlflow.model_name,
                        lambda: mlflow_registry.promote(mlflow, request)))  # fmt: skip
    if targets.oci is not None:
        registry = targets.oci
        actions.append(("oci", registry.reference, lambda: oci.promote(registry, request)))
    return actions


def _run_all(
    actions: list[tuple[str, str, Action]],
) -> tuple[list[PublishTargetStatus], list[WorkloadError]]:
    statuses: list[PublishTargetStatus] = []
    errors: list[WorkloadError] = []
    for target, reference, action in actions:
        try:
            status = action()
            log.info("%s: %s", target, status.message)
        except WorkloadError as exc:
            log.error("%s %s failed: %s", target, reference, exc)
            errors.append(exc)
            status = PublishTargetStatus.model_validate(
                {"target": target, "phase": "Failed", "reference": reference,
                 "message": f"{exc.reason}: {exc.message}"[:500]}
            )  # fmt: skip
        statuses.append(status)
    return statuses, errors


def run(spec: PublishStepSpec) -> StepResult:
    """Publish (or promote) and report one status per target."""
    if spec.mode == "promote":
        actions = _promote_actions(spec)
    else:
        artifact = open_artifact(storage.fetch(spec.artifact.uri), spec.artifact.content_hash)
        actions = _publish_actions(spec, artifact)
    if not actions:
        raise WorkloadError("InvalidInput", "spec.publish names no target")
    statuses, errors = _run_all(actions)
    details = {"publish": [s.model_dump(mode="json", by_alias=True, exclude_none=True)
                           for s in statuses]}  # fmt: skip
    summary = "; ".join(f"{s.target}: {s.message}" for s in statuses)
    if errors:
        first = errors[0]
        return StepResult(step="publish", ok=False, reason=first.reason, message=summary,
                          details=details)  # fmt: skip
    return StepResult(
        step="publish",
        ok=True,
        reason="Completed",
        message=summary,
        output_uri=spec.artifact.uri,
        content_hash=spec.artifact.content_hash,
        details=details,
    )
