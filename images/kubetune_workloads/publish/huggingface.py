"""Upload a model artifact to a Hugging Face Hub repository, with a generated model card.

One commit (``HfApi.create_commit``) holds every file of the artifact plus ``README.md`` (the
card, unless the artifact has one), so the repository never shows half a model. The repository
is created (private by default) when missing. The write token comes from
``KUBETUNE_HF_PUBLISH_TOKEN`` (set from a Secret) and is handed to the client, never logged.
"""

from __future__ import annotations

import os

from kubetune.api.publish import HF_PUBLISH_TOKEN_ENV, HuggingFaceTarget, PublishTargetStatus
from kubetune.api.steps import PublishStepSpec

from kubetune_workloads.errors import WorkloadError
from kubetune_workloads.publish.artifact import CARD_FILE, Artifact, model_card

DEFAULT_ENDPOINT = "https://huggingface.co"


def _error(exc: Exception, repo: str) -> WorkloadError:
    response = getattr(exc, "response", None)
    code = getattr(response, "status_code", None)
    if code in (401, 403):
        return WorkloadError(
            "PublishUnauthorized", f"the Hub refused the token for {repo} ({code})"
        )
    if code is not None and 400 <= code < 500:
        return WorkloadError("PublishRejected", f"the Hub refused the upload to {repo} ({code})")
    return WorkloadError(
        "RegistryUnreachable", f"the Hub did not take {repo}: {type(exc).__name__}"
    )


def publish(
    target: HuggingFaceTarget, spec: PublishStepSpec, artifact: Artifact
) -> PublishTargetStatus:
    """Create the repository if needed and commit the artifact and its card."""
    from huggingface_hub import CommitOperationAdd, HfApi

    token = os.environ.get(HF_PUBLISH_TOKEN_ENV)
    if not token:
        raise WorkloadError("PublishUnauthorized", f"no Hub token: {HF_PUBLISH_TOKEN_ENV} is unset")
    repo = target.repo[len("hf://") :]
    endpoint = (target.endpoint or DEFAULT_ENDPOINT).rstrip("/")
    api = HfApi(endpoint=endpoint, token=token)
    operations = [
        CommitOperationAdd(path_in_repo=name, path_or_fileobj=str(artifact.root / name))
        for name in artifact.files
    ]
    if CARD_FILE not in artifact.files:
        card = model_card(spec, artifact).encode()
        operations.append(CommitOperationAdd(path_in_repo=CARD_FILE, path_or_fileobj=card))
    try:
        api.create_repo(repo, private=target.private, repo_type="model", exist_ok=True)
        commit = api.create_commit(
            repo, operations, commit_message=f"kubetune {spec.version}", repo_type="model"
        )
    except Exception as exc:  # HfHubHTTPError, the HTTP client's transport errors, OSError
        raise _error(exc, repo) from None
    return PublishTargetStatus(
        target="huggingface",
        phase="Published",
        reference=target.repo,
        version=commit.oid,
        url=f"{endpoint}/{repo}",
        message=f"committed {len(operations)} files to {repo}",
    )
