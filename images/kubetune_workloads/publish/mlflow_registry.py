"""Register a model version in the MLflow Model Registry, and move aliases on promotion.

The artifact directory is logged to an MLflow run (experiment ``kubetune/<model name>``) under
``model/``, with the lineage as run and version tags (``kubetune.*``) and the known scores as run
metrics; the version's source is that run's ``model`` directory. A version already registered
for the same kubetune version and content hash (a retried pod) is reused, never duplicated; a
version whose aliases could not be set is deleted, so no half-published version stays.
Credentials come from ``MLFLOW_TRACKING_USERNAME``/``PASSWORD`` or ``MLFLOW_TRACKING_TOKEN``,
read by the MLflow client itself from the environment (set from Secrets).
"""

from __future__ import annotations

import contextlib
import os
from typing import Any

import requests
from kubetune.api.publish import MlflowTarget, PublishTargetStatus
from kubetune.api.steps import PromoteRequest, PublishStepSpec

from kubetune_workloads.errors import WorkloadError
from kubetune_workloads.publish.artifact import LINEAGE_PREFIX, Artifact, lineage_tags

PROBE_TIMEOUT_S = 15.0
# Fail fast on a dead server instead of MLflow's default minutes of retries.
CLIENT_ENV_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_TIMEOUT": "60"}


def _probe(uri: str) -> None:
    """The tracking server answers HTTP (any status): else RegistryUnreachable, at once."""
    try:
        requests.get(uri.rstrip("/") + "/health", timeout=PROBE_TIMEOUT_S)
    except requests.RequestException as exc:
        raise WorkloadError(
            "RegistryUnreachable", f"MLflow server {uri} did not answer: {type(exc).__name__}"
        ) from None


def _error(exc: Exception, uri: str, doing: str) -> WorkloadError:
    """An MLflow failure as a reason: 401/403 unauthorized, 4xx rejected, else unreachable."""
    text = str(exc)
    code = str(getattr(exc, "error_code", ""))
    if any(s in text for s in ("401", "403")) or code in ("UNAUTHENTICATED", "PERMISSION_DENIED"):
        return WorkloadError(
            "PublishUnauthorized", f"MLflow server {uri} refused the credentials ({doing})"
        )
    if code in ("INVALID_PARAMETER_VALUE", "RESOURCE_ALREADY_EXISTS", "BAD_REQUEST"):
        return WorkloadError("PublishRejected", f"MLflow {doing}: {text[:300]}")
    return WorkloadError("RegistryUnreachable", f"MLflow {doing} failed: {text[:300]}")


def _client(target: MlflowTarget) -> Any:
    for name, value in CLIENT_ENV_DEFAULTS.items():
        os.environ.setdefault(name, value)
    _probe(target.tracking_uri)
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=target.tracking_uri, registry_uri=target.tracking_uri)


def _ensure_model(client: Any, name: str) -> None:
    from mlflow.exceptions import MlflowException

    try:
        client.get_registered_model(name)
    except MlflowException as exc:
        if getattr(exc, "error_code", "") != "RESOURCE_DOES_NOT_EXIST":
            raise
        client.create_registered_model(name, tags={"kubetune.managed": "true"})


def _existing(client: Any, name: str, tags: dict[str, str]) -> Any | None:
    """The version registered earlier for this kubetune version and content hash, if any."""
    version = tags[f"{LINEAGE_PREFIX}version"].replace("'", "")
    found = client.search_model_versions(
        f"name = '{name}' and tags.`{LINEAGE_PREFIX}version` = '{version}'"
    )
    sha = tags[f"{LINEAGE_PREFIX}artifact_sha256"]
    same = [v for v in found if (v.tags or {}).get(f"{LINEAGE_PREFIX}artifact_sha256") == sha]
    return max(same, key=lambda v: int(v.version)) if same else None


def _log_run(client: Any, target: MlflowTarget, spec: PublishStepSpec, artifact: Artifact,
             tags: dict[str, str]) -> tuple[str, str]:  # fmt: skip
    """A finished run holding the artifact under ``model/``: (source URI, run id)."""
    experiment_name = f"kubetune/{target.model_name}"
    experiment = client.get_experiment_by_name(experiment_name)
    experiment_id = (
        experiment.experiment_id if experiment else client.create_experiment(experiment_name)
    )
    run = client.create_run(experiment_id, run_name=spec.version, tags=tags)
    run_id = run.info.run_id
    for name, value in sorted(spec.lineage.metrics.items()):
        client.log_metric(run_id, name, float(value))
    client.log_artifacts(run_id, str(artifact.root), artifact_path="model")
    client.set_terminated(run_id, "FINISHED")
    return f"{run.info.artifact_uri.rstrip('/')}/model", run_id


def publish(target: MlflowTarget, spec: PublishStepSpec, artifact: Artifact) -> PublishTargetStatus:
    """Register (or reuse) the version and set the aliases."""
    from mlflow.exceptions import MlflowException

    name = target.model_name
    tags = {**lineage_tags(spec, artifact), **(target.tags or {})}
    client = _client(target)
    version = None
    try:
        _ensure_model(client, name)
        version = _existing(client, name, tags)
        if version is None:
            source, run_id = _log_run(client, target, spec, artifact, tags)
            version = client.create_model_version(
                name, source, run_id=run_id, tags=tags, description=f"kubetune {spec.version}"
            )
        for alias in spec.publish.aliases or []:
            client.set_registered_model_alias(name, alias, version.version)
    except MlflowException as exc:
        if version is not None and spec.publish.aliases:
            _delete_quietly(client, name, version.version)
        raise _error(exc, target.tracking_uri, f"registering {name}") from None
    return PublishTargetStatus(
        target="mlflow",
        phase="Published",
        reference=name,
        version=str(version.version),
        url=f"{target.tracking_uri.rstrip('/')}/#/models/{name}/versions/{version.version}",
        aliases=list(spec.publish.aliases or []) or None,
        message=f"registered {name} version {version.version}",
    )


def _delete_quietly(client: Any, name: str, version: str) -> None:
    from mlflow.exceptions import MlflowException

    with contextlib.suppress(MlflowException):
        client.delete_model_version(name, version)


def promote(target: MlflowTarget, request: PromoteRequest) -> PublishTargetStatus:
    """Point ``request.alias`` at the version; clear the cleared aliases that pointed at it."""
    from mlflow.exceptions import MlflowException

    if not request.mlflow_version:
        raise WorkloadError("NotPublished", "no MLflow version of the promoted model is known")
    name, version = target.model_name, request.mlflow_version
    client = _client(target)
    try:
        current = client.get_model_version(name, version)
        for key, value in sorted(request.tags.items()):
            client.set_model_version_tag(name, version, key, value)
        client.set_registered_model_alias(name, request.alias, version)
        for alias in request.clear_aliases:
            if alias in (current.aliases or []):
                client.delete_registered_model_alias(name, alias)
    except MlflowException as exc:
        raise _error(exc, target.tracking_uri, f"promoting {name} version {version}") from None
    return PublishTargetStatus(
        target="mlflow",
        phase="Published",
        reference=name,
        version=version,
        url=f"{target.tracking_uri.rstrip('/')}/#/models/{name}/versions/{version}",
        aliases=[request.alias],
        message=f"alias {request.alias} -> {name} version {version}",
    )
