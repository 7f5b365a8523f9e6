"""The inputs a dataset version hashes: one checksum per input file, with two names.

Each input file gets the URI it was read from (``file:///abs/in.jsonl``, ``pvc://claim/f``,
``s3://bucket/key``, ``https://...``, ``hf://datasets/...``), which the artifact manifest lists
(``inputs[].uri``) for lineage, and a **key**, which the version hashes. For a local file the key
is its path relative to what the source URI names (the file's own name, or its path below the
directory or the glob's fixed prefix), so the same corpus copied to another folder keeps its
version; for a remote object the key is its URI. The version also hashes where in the spec the
input sits (source *i* or decontamination set *j*), so reordering the inputs changes it.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from kubetune.api.steps import MANIFEST_FILE

from kubetune_workloads import storage
from kubetune_workloads.manifest import file_sha256, read_manifest

GLOB_CHARS = frozenset("*?[")
# Files of a model directory that are weights, not tokenizer: left out of a local tokenizer's
# identity (hashing gigabytes of weights to identify a vocabulary would cost minutes).
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".gguf", ".h5", ".onnx")


@dataclass(frozen=True)
class InputChecksum:
    """One input file: where it was read (a URI), the version's key for it, its checksum."""

    uri: str
    key: str
    checksum: str


def local_root(path: Path) -> Path:
    """What a local source path is relative to: the fixed prefix of a glob, a directory
    itself, or a file's folder."""
    if GLOB_CHARS & set(str(path)):
        parts = path.parts
        fixed = next(i for i, part in enumerate(parts) if GLOB_CHARS & set(part))
        return Path(*parts[:fixed]) if fixed else Path(".")
    return path if path.is_dir() else path.parent


def local_file_uri(scheme: str, file: Path) -> str:
    """The URI of a local input file: ``file:///abs/path``, or ``pvc://claim/path`` for a file
    on a mounted claim."""
    absolute = Path(os.path.abspath(file))
    claims = Path(os.path.abspath(storage.pvc_root()))
    if scheme == "pvc" and absolute.is_relative_to(claims):
        return "pvc://" + absolute.relative_to(claims).as_posix()
    return "file://" + absolute.as_posix()


def local_checksum(scheme: str, root: Path, file: Path) -> InputChecksum:
    """The checksum of a local input file, named by URI and keyed relative to ``root``."""
    key = Path(os.path.relpath(file, root)).as_posix()
    return InputChecksum(local_file_uri(scheme, file), key, "sha256:" + file_sha256(file))


def tokenizer_key(uri: str | None) -> str:
    """What the version hashes for the step's tokenizer: a remote URI as it is (``hf://`` with
    its revision, ``s3://``); for a local one, its content: the manifest hash of a kubetune
    artifact, else the checksums of its files but weights, so where it lies does not count."""
    if not uri:
        return ""
    path = storage.local_path(uri)
    if path is None or not path.exists():
        return uri
    if path.is_file():
        return "sha256:" + file_sha256(path)
    manifest = read_manifest(path)
    if manifest is not None:
        return manifest.content_hash
    digest = hashlib.sha256()
    for file in sorted(p for p in path.iterdir() if p.is_file()):
        if file.name != MANIFEST_FILE and not file.name.endswith(WEIGHT_SUFFIXES):
            digest.update(f"{file.name}\0{file_sha256(file)}\n".encode())
    return "sha256:" + digest.hexdigest()
