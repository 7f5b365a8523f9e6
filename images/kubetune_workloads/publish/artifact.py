"""The model being published: its files, the kubetune manifest, lineage and the model card.

Everything here is derived from the artifact directory and the step spec only, so each target
publishes the same facts. Nothing from the environment (where the credentials are) is read.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from kubetune.api.steps import MANIFEST_FILE, ArtifactManifest, PublishStepSpec

from kubetune_workloads.errors import invalid_input
from kubetune_workloads.manifest import read_manifest
from kubetune_workloads.modelio import MODEL_INFO_FILE

CARD_FILE = "README.md"
LINEAGE_PREFIX = "kubetune."


@dataclass(frozen=True)
class Artifact:
    """A complete model artifact on local disk."""

    root: Path
    manifest: ArtifactManifest
    files: tuple[str, ...]  # relative POSIX paths, sorted, the manifest included

    @property
    def content_hash(self) -> str:
        return self.manifest.content_hash

    def family(self) -> str | None:
        info = self.root / MODEL_INFO_FILE
        if not info.is_file():
            return None
        try:
            value = json.loads(info.read_text()).get("family")
        except ValueError:
            return None
        return str(value) if value else None


def open_artifact(root: Path, expected_hash: str | None) -> Artifact:
    """The artifact at ``root``, refusing one that is incomplete (no manifest) or not the one
    the operator resolved (another content hash)."""
    manifest = read_manifest(root)
    if manifest is None:
        raise invalid_input(f"{root} has no {MANIFEST_FILE}: the artifact is not complete")
    if expected_hash and manifest.content_hash != expected_hash:
        raise invalid_input(
            f"{root} holds {manifest.content_hash}, not the artifact {expected_hash} to publish"
        )
    files = tuple(
        sorted(
            p.relative_to(root).as_posix()
            for p in root.rglob("*")
            if p.is_file() and not p.relative_to(root).as_posix().startswith(".")
        )
    )
    return Artifact(root, manifest, files)


def lineage_tags(spec: PublishStepSpec, artifact: Artifact) -> dict[str, str]:
    """``kubetune.*`` tags: where the model came from and what it scored (no secrets)."""
    lineage = spec.lineage
    tags = {
        "resource": lineage.resource,
        "run_id": lineage.run_id,
        "version": spec.version,
        "artifact_uri": spec.artifact.uri,
        "artifact_sha256": artifact.content_hash,
        "base_model": lineage.base_model,
        "dataset": lineage.dataset,
        "dataset_version": lineage.dataset_version,
        "source_model": lineage.source_model,
        "kubetune_version": artifact.manifest.kubetune_version,
    }
    found = {f"{LINEAGE_PREFIX}{k}": v for k, v in tags.items() if v}
    for name, value in sorted(lineage.metrics.items()):
        found[f"{LINEAGE_PREFIX}metric.{name}"] = f"{value:.6g}"
    return found


def model_card(spec: PublishStepSpec, artifact: Artifact) -> str:
    """A Markdown model card with YAML front matter (the Hub's format)."""
    lineage = spec.lineage
    front = ["---", "library_name: transformers", "tags:", "- kubetune"]
    if lineage.base_model and lineage.base_model.startswith("hf://"):
        front.append(f"base_model: {lineage.base_model[len('hf://') :].split('@')[0]}")
    front.append("---")
    lines = [
        *front,
        "",
        f"# {spec.version}",
        "",
        f"Published by kubetune from {lineage.resource} (run {lineage.run_id}).",
        "",
        "| | |",
        "|---|---|",
        f"| Artifact | `{spec.artifact.uri}` |",
        f"| Content hash | `{artifact.content_hash}` |",
    ]
    for label, value in (
        ("Base model", lineage.base_model),
        ("Source model", lineage.source_model),
        ("Dataset", lineage.dataset),
        ("Dataset version", lineage.dataset_version),
        ("Family", artifact.family()),
    ):
        if value:
            lines.append(f"| {label} | `{value}` |")
    if lineage.metrics:
        lines += ["", "## Scores", "", "| Metric | Value |", "|---|---|"]
        lines += [f"| {k} | {v:.6g} |" for k, v in sorted(lineage.metrics.items())]
    lines += ["", "## Files", ""]
    lines += [f"- `{name}` (sha256 `{artifact.manifest.files.get(name, '-')}`)"
              for name in artifact.files if name != MANIFEST_FILE]  # fmt: skip
    return "\n".join(lines) + "\n"
