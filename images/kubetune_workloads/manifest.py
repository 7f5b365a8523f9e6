"""Artifact manifests: content hashes, provenance, completeness."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from kubetune import __version__
from kubetune.api.steps import MANIFEST_FILE, ArtifactManifest, InputArtifact, Producer

_CHUNK = 1 << 20


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def hash_tree(
    root: Path, exclude: tuple[str, ...] = (MANIFEST_FILE,)
) -> tuple[str, dict[str, str]]:
    """(content hash, {relative path: sha256}) over every file under ``root``."""
    files: dict[str, str] = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = path.relative_to(root).as_posix()
        if rel in exclude or rel.split("/")[0].startswith(".tmp"):
            continue
        files[rel] = file_sha256(path)
    digest = hashlib.sha256()
    for rel, sha in files.items():
        digest.update(f"{rel}\0{sha}\n".encode())
    return f"sha256:{digest.hexdigest()}", files


def spec_hash(spec: Any) -> str:
    """Stable hash of a JSON-able spec."""
    text = json.dumps(spec, sort_keys=True, separators=(",", ":"), default=str)
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def step_spec_payload(step: Any) -> dict[str, Any]:
    """What of a step spec defines its artifact: all but where it writes, who asked, and the
    progress port (for ``write_manifest(spec=...)``)."""
    payload: dict[str, Any] = step.model_dump(
        mode="json", by_alias=True, exclude={"output_uri", "producer", "progress_port"}
    )
    return payload


def write_manifest(
    root: Path,
    *,
    artifact: Literal["dataset", "model", "compressed-model", "evaluation", "feedback"],
    producer: Producer,
    spec: Any,
    inputs: list[InputArtifact] | None = None,
    seed: int | None = None,
    extra: dict[str, Any] | None = None,
    content_hash: str | None = None,
) -> ArtifactManifest:
    """Hash the directory and write its manifest (call this last)."""
    computed, files = hash_tree(root)
    manifest = ArtifactManifest(
        artifact=artifact,
        content_hash=content_hash or computed,
        files=files,
        producer=producer,
        spec_hash=spec_hash(spec),
        inputs=inputs or [],
        kubetune_version=__version__,
        seed=seed,
        created_at=datetime.now(UTC),
        extra=extra,
    )
    tmp = root / f".{MANIFEST_FILE}.tmp"
    tmp.write_text(manifest.to_json())
    tmp.rename(root / MANIFEST_FILE)
    return manifest


def read_manifest(root: Path) -> ArtifactManifest | None:
    """The manifest of a complete artifact, or None when absent or unreadable."""
    path = root / MANIFEST_FILE
    if not path.is_file():
        return None
    try:
        return ArtifactManifest.model_validate_json(path.read_text())
    except ValueError:
        return None


def input_artifact(uri: str, root: Path | None, role: str | None = None) -> InputArtifact:
    """An input's URI with its content hash (and a Dataset's version) when it is a kubetune
    artifact; a plain file or directory gets the hash of its content."""
    manifest = read_manifest(root) if root is not None and root.is_dir() else None
    if manifest is not None:
        version = (manifest.extra or {}).get("version")
        return InputArtifact(
            uri=uri,
            content_hash=manifest.content_hash,
            role=role,
            version=str(version) if version else None,
        )
    content_hash = None
    if root is not None and root.is_file():
        content_hash = f"sha256:{file_sha256(root)}"
    elif root is not None and root.is_dir():
        content_hash = hash_tree(root)[0]
    return InputArtifact(uri=uri, content_hash=content_hash, role=role)
