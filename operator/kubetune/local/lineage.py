"""`kubetune lineage KIND/NAME`: the chain of artifacts behind a resource, back to raw data.

Every artifact's ``kubetune-manifest.json`` lists its inputs with their role, version and
content hash. Starting from the resource's current output, each input that is itself a local
kubetune artifact is followed to its own manifest; raw sources (a Dataset's input files), plain
files (a prompts file) and remote inputs end the chain. An input whose artifact was replaced
since (its manifest's hash is not the one recorded) is flagged.
"""

from __future__ import annotations

from pathlib import Path

from kubetune.api.kinds import KIND_INFO
from kubetune.api.steps import MANIFEST_FILE, ArtifactManifest, InputArtifact
from kubetune.local.store import LocalStore, resource_key


class LineageError(Exception):
    """The resource or its artifact cannot be found."""


def _kind(text: str) -> str:
    for kind, info in KIND_INFO.items():
        names = {kind.lower(), info.plural, info.singular, *info.short_names}
        if text.lower() in {n.lower() for n in names if n}:
            return kind
    raise LineageError(f"unknown kind {text!r}; one of {', '.join(KIND_INFO)}")


def local_path(uri: str, workdir: Path) -> Path | None:
    """Where a URI lies on this machine, as `kubetune run` maps it; None when remote."""
    if uri.startswith("file://"):
        return Path(uri[len("file://") :])
    if uri.startswith("pvc://"):
        return workdir / "pvc" / uri[len("pvc://") :]
    return None


def _read(path: Path) -> ArtifactManifest | None:
    file = path / MANIFEST_FILE
    if not file.is_file():
        return None
    try:
        return ArtifactManifest.model_validate_json(file.read_text())
    except ValueError:
        return None


def _describe(item: InputArtifact, default_role: str) -> str:
    parts = [f"{item.role or default_role}: {item.uri}"]
    if item.version:
        parts.append(f"version {item.version}")
    parts.append(item.content_hash or "no content hash")
    return "  ".join(parts)


def lineage(workdir: Path, target: str) -> list[str]:
    """The lines `kubetune lineage` prints for ``KIND/NAME``."""
    if "/" not in target:
        raise LineageError(f"expected KIND/NAME, e.g. Evaluation/my-eval, not {target!r}")
    kind_text, name = target.split("/", 1)
    kind = _kind(kind_text)
    store = LocalStore(workdir)
    stored = store.state.resources.get(resource_key(kind, name))
    if stored is None:
        raise LineageError(f"no {kind}/{name} in {workdir}")
    status = stored.body.get("status") or {}
    output = str(status.get("outputUri") or "")
    path = local_path(output, workdir) if output else None
    manifest = _read(path) if path is not None else None
    if manifest is None:
        raise LineageError(
            f"{kind}/{name} has no finished artifact yet (phase {status.get('phase')})"
        )
    lines = [f"{kind}/{name}"]
    _walk(manifest, output, workdir, lines, depth=1, seen=set())
    return lines


def _walk(
    manifest: ArtifactManifest,
    uri: str,
    workdir: Path,
    lines: list[str],
    depth: int,
    seen: set[str],
) -> None:
    indent = "  " * depth
    producer = manifest.producer
    version = (manifest.extra or {}).get("version")
    lines.append(
        f"{indent}{manifest.artifact} {uri}"
        + (f"  version {version}" if version else "")
        + f"  {manifest.content_hash}"
        + f"  (by {producer.kind}/{producer.name}, run {producer.run_id})"
    )
    seen.add(manifest.content_hash)
    for item in manifest.inputs:
        path = local_path(item.uri, workdir)
        upstream = _read(path) if path is not None and path.is_dir() else None
        role = "source" if manifest.artifact == "dataset" else "input"
        line = f"{indent}  <- {_describe(item, role)}"
        if upstream is None:
            if manifest.artifact == "dataset":
                label = "raw data"
            else:
                label = "remote" if path is None and "://" in item.uri else "not an artifact"
            lines.append(f"{line}  [{label}]")
            continue
        if item.content_hash and upstream.content_hash != item.content_hash:
            lines.append(f"{line}  [REPLACED since: now {upstream.content_hash}]")
            continue
        lines.append(line)
        if upstream.content_hash not in seen:
            _walk(upstream, item.uri, workdir, lines, depth + 2, seen)
