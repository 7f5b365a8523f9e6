"""Push a model artifact as a CNCF ModelPack OCI artifact, and move tags on promotion.

The manifest (``artifactType application/vnd.cncf.model.manifest.v1+json``) has a ModelPack
config blob (``application/vnd.cncf.model.config.v1+json``: descriptor, modelfs, config) and
one raw layer per file, typed weight / weight config (config, tokenizer) / doc / code, each
annotated with its path (``org.cncf.model.filepath`` and ``org.opencontainers.image.title``).
The kubetune manifest and the lineage are manifest annotations. Blobs go first and the manifest
last, so a failed push leaves no tag pointing at a partial model. Tags: the version, then each
alias (``challenger``); ``champion`` is moved by the promote mode to a digest pushed earlier.
"""

from __future__ import annotations

import json
import os
from datetime import UTC
from typing import Any

from kubetune.api.publish import OCI_PASSWORD_ENV, OCI_USERNAME_ENV, OciTarget, PublishTargetStatus
from kubetune.api.steps import PromoteRequest, PublishStepSpec

from kubetune_workloads.errors import WorkloadError
from kubetune_workloads.manifest import file_sha256
from kubetune_workloads.publish.artifact import CARD_FILE, Artifact, lineage_tags, model_card
from kubetune_workloads.publish.registry import OCI_MANIFEST, Registry, sha256_digest

ARTIFACT_TYPE = "application/vnd.cncf.model.manifest.v1+json"
CONFIG_TYPE = "application/vnd.cncf.model.config.v1+json"
WEIGHT = "application/vnd.cncf.model.weight.v1.raw"
WEIGHT_CONFIG = "application/vnd.cncf.model.weight.config.v1.raw"
DOC = "application/vnd.cncf.model.doc.v1.raw"
CODE = "application/vnd.cncf.model.code.v1.raw"
FILEPATH = "org.cncf.model.filepath"
TITLE = "org.opencontainers.image.title"
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf", ".onnx", ".ckpt")
DOC_SUFFIXES = (".md", ".txt", ".html", ".pdf", ".rst")
DOC_NAMES = ("LICENSE", "NOTICE", "README")


def media_type(relpath: str) -> str:
    """The ModelPack layer type of a file of the artifact."""
    name = relpath.rsplit("/", 1)[-1]
    if name.endswith(WEIGHT_SUFFIXES):
        return WEIGHT
    if name.endswith(DOC_SUFFIXES) or name.split(".")[0].upper() in DOC_NAMES:
        return DOC
    if name.endswith(".py"):
        return CODE
    return WEIGHT_CONFIG


def registry_for(target: OciTarget) -> Registry:
    """A client of the target's repository, with the credentials from the environment."""
    username = os.environ.get(OCI_USERNAME_ENV) if target.credentials else None
    password = os.environ.get(OCI_PASSWORD_ENV) if target.credentials else None
    return Registry(target.reference, target.insecure, username, password)


def _layer(relpath: str, digest: str, size: int) -> dict[str, Any]:
    return {
        "mediaType": media_type(relpath),
        "digest": digest,
        "size": size,
        "annotations": {FILEPATH: relpath, TITLE: relpath},
    }


def _config(spec: PublishStepSpec, artifact: Artifact, layers: list[dict[str, Any]]) -> bytes:
    descriptor = {
        "createdAt": artifact.manifest.created_at.astimezone(UTC).isoformat(),
        "family": artifact.family(),
        "name": spec.lineage.resource.rsplit("/", 1)[-1],
        "version": spec.version,
        "description": f"kubetune {spec.lineage.resource} run {spec.lineage.run_id}",
        "datasetsURL": [spec.lineage.dataset] if spec.lineage.dataset else None,
    }
    safetensors = any(name.endswith(".safetensors") for name in artifact.files)
    config = {
        "descriptor": {k: v for k, v in descriptor.items() if v},
        "modelfs": {"type": "layers", "diffIds": [layer["digest"] for layer in layers]},
        "config": {"format": "safetensors"} if safetensors else {},
    }
    return json.dumps(config, sort_keys=True, separators=(",", ":")).encode()


def _annotations(spec: PublishStepSpec, artifact: Artifact) -> dict[str, str]:
    manifest = artifact.manifest.model_dump(mode="json", by_alias=True, exclude_none=True)
    annotations = {
        "org.opencontainers.image.version": spec.version,
        # the artifact's time, not now: a retried push gives the same manifest digest
        "org.opencontainers.image.created": artifact.manifest.created_at.astimezone(
            UTC
        ).isoformat(),
        "org.opencontainers.image.description": f"kubetune model {spec.lineage.resource}",
        "dev.kubetune.manifest": json.dumps(manifest, sort_keys=True, separators=(",", ":")),
    }
    annotations.update({f"dev.{k}": v for k, v in lineage_tags(spec, artifact).items()})
    return annotations


def build_and_push(registry: Registry, spec: PublishStepSpec, artifact: Artifact) -> str:
    """Push every blob, then the manifest by digest; the manifest digest."""
    layers = []
    for relpath in artifact.files:
        path = artifact.root / relpath
        digest = "sha256:" + file_sha256(path)
        registry.push_blob(path, digest)
        layers.append(_layer(relpath, digest, path.stat().st_size))
    if CARD_FILE not in artifact.files:
        card = model_card(spec, artifact).encode()
        registry.push_blob(None, sha256_digest(card), data=card)
        layers.append(_layer(CARD_FILE, sha256_digest(card), len(card)))
    config = _config(spec, artifact, layers)
    registry.push_blob(None, sha256_digest(config), data=config)
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": ARTIFACT_TYPE,
        "config": {"mediaType": CONFIG_TYPE, "digest": sha256_digest(config), "size": len(config)},
        "layers": layers,
        "annotations": _annotations(spec, artifact),
    }
    body = json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()
    return registry.put_manifest(sha256_digest(body), body)


def publish(target: OciTarget, spec: PublishStepSpec, artifact: Artifact) -> PublishTargetStatus:
    """Push the artifact and tag it with the version and the aliases."""
    registry = registry_for(target)
    registry.check()
    digest = build_and_push(registry, spec, artifact)
    tag = target.tag or spec.version
    aliases = list(spec.publish.aliases or [])
    for name in (tag, *aliases):
        registry.tag(digest, name)
    return PublishTargetStatus(
        target="oci",
        phase="Published",
        reference=target.reference,
        version=tag,
        digest=digest,
        url=f"{target.reference}@{digest}",
        aliases=aliases or None,
        message=f"pushed {len(artifact.files)} files as {target.reference}:{tag}",
    )


def promote(target: OciTarget, request: PromoteRequest) -> PublishTargetStatus:
    """Move the tag ``request.alias`` to the digest published earlier."""
    if not request.oci_digest:
        raise WorkloadError("NotPublished", "no OCI digest of the promoted model is known")
    registry = registry_for(target)
    registry.check()
    registry.tag(request.oci_digest, request.alias)
    return PublishTargetStatus(
        target="oci",
        phase="Published",
        reference=target.reference,
        version=request.alias,
        digest=request.oci_digest,
        url=f"{target.reference}:{request.alias}",
        aliases=[request.alias],
        message=f"tag {request.alias} -> {request.oci_digest}",
    )
