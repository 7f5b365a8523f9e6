"""Where records come from: file:// and pvc:// paths (files, directories, globs), http(s)://,
s3:// (fsspec/s3fs, credentials from the AWS env variables) and hf://datasets/ORG/NAME.

:func:`iter_source` streams one :class:`DataSource` as raw items (dicts, or
:class:`Malformed` for what cannot be read), file by file and line by line, so memory does not
grow with the size of the corpus.
"""

from __future__ import annotations

import glob
import hashlib
import os
import shutil
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from kubetune.api.dataset import DataSource

from kubetune_workloads import storage
from kubetune_workloads.dataprep.formats import (
    RawItem,
    read_csv,
    read_json,
    read_jsonl,
    read_parquet,
    read_text,
)
from kubetune_workloads.dataprep.inputs import InputChecksum, local_checksum, local_root
from kubetune_workloads.dataprep.streams import decompressed, strip_compression
from kubetune_workloads.errors import WorkloadError, invalid_input

EXTENSIONS = {
    "jsonl": (".jsonl", ".ndjson", ".json"),
    "json": (".json",),
    "csv": (".csv", ".tsv"),
    "parquet": (".parquet", ".pq"),
    "text": (".txt", ".text", ".md"),
}
HTTP_TIMEOUT_S = 60
_GLOB_CHARS = set("*?[")


@dataclass(frozen=True)
class SourceFile:
    """One file of a source: a display name and how to open it as bytes."""

    name: str
    open: Callable[[], AbstractContextManager[IO[bytes]]]


def display_uri(uri: str) -> str:
    """``uri`` without user info, query or fragment (which may carry credentials)."""
    parts = urllib.parse.urlsplit(uri)
    host = parts.netloc.rsplit("@", 1)[-1]
    return urllib.parse.urlunsplit((parts.scheme, host, parts.path, "", ""))


def iter_source(source: DataSource) -> Iterator[RawItem]:
    """Raw items of every file of ``source``, in a stable (sorted) order."""
    scheme, rest = storage.split_uri(source.uri)
    if scheme == "hf":
        yield from _iter_hf(rest, source)
        return
    for file in list_files(source):
        with file.open() as raw:
            stream = decompressed(raw, file.name)
            yield from _read(stream, file.name, source)


def _read(stream: IO[bytes], name: str, source: DataSource) -> Iterator[RawItem]:
    if source.format == "jsonl":
        return read_jsonl(stream, name)
    if source.format == "json":
        return read_json(stream, name)
    if source.format == "csv":
        return read_csv(stream, name)
    if source.format == "parquet":
        return read_parquet(stream, name)
    return read_text(stream, name, source.text_split)


def list_files(source: DataSource) -> list[SourceFile]:
    """The files a source URI names (a file, a directory, or a glob), sorted."""
    scheme, rest = storage.split_uri(source.uri)
    if scheme in ("file", "pvc"):
        return _local_files(source)
    if scheme == "s3":
        return _s3_files(rest, source)
    if scheme in ("http", "https"):
        return [SourceFile(display_uri(source.uri), lambda: _open_http(source.uri, source.format))]
    raise invalid_input(f"unsupported source scheme {scheme!r} in {source.uri}")


def _matches_format(name: str, fmt: str) -> bool:
    return strip_compression(name).lower().endswith(EXTENSIONS[fmt])


def _pick(names: list[str], fmt: str) -> list[str]:
    """Files of a directory: those with the format's extensions, else every file."""
    visible = [n for n in names if not any(p.startswith(".") for p in Path(n).parts[-1:])]
    matching = [n for n in visible if _matches_format(n, fmt)]
    return sorted(matching or visible)


def _local_files(source: DataSource) -> list[SourceFile]:
    path = storage.local_path(source.uri)
    assert path is not None
    text = str(path)
    if _GLOB_CHARS & set(text):
        names = sorted(p for p in glob.glob(text, recursive=True) if Path(p).is_file())
        if not names:
            raise invalid_input(f"source {source.uri} matches no files")
    elif path.is_dir():
        names = _pick([str(p) for p in path.rglob("*") if p.is_file()], source.format)
        if not names:
            raise invalid_input(f"source {source.uri} is an empty directory")
    elif path.is_file():
        names = [text]
    else:
        raise invalid_input(f"source {source.uri} does not exist (looked at {path})")
    return [SourceFile(n, _local_opener(n)) for n in names]


def _local_opener(name: str) -> Callable[[], AbstractContextManager[IO[bytes]]]:
    def opener() -> AbstractContextManager[IO[bytes]]:
        try:
            return open(name, "rb")
        except OSError as exc:
            raise invalid_input(f"cannot read {name}: {exc.strerror or exc}") from exc

    return opener


def _s3_files(rest: str, source: DataSource) -> list[SourceFile]:
    fs: Any = storage.s3_filesystem()
    try:
        if _GLOB_CHARS & set(rest):
            names = sorted(fs.glob(rest))
        elif fs.isdir(rest):
            names = _pick(storage.s3_find(fs, rest, source.uri), source.format)
        elif fs.exists(rest):
            names = [rest]
        else:
            names = []
    except WorkloadError:
        raise
    except Exception as exc:
        raise WorkloadError("StorageError", f"cannot list {source.uri}: {exc}") from exc
    if not names:
        raise invalid_input(f"source {source.uri} matches no objects")
    return [SourceFile(f"s3://{n}", storage.s3_opener(fs, n)) for n in names]


@contextmanager
def _open_http(url: str, fmt: str) -> Iterator[IO[bytes]]:
    headers = {"User-Agent": "kubetune-dataprep"}
    try:
        response = urllib.request.urlopen(
            urllib.request.Request(url, headers=headers), timeout=HTTP_TIMEOUT_S
        )
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise WorkloadError("StorageError", f"cannot download {display_uri(url)}: {exc}") from exc
    with response:
        if fmt != "parquet":
            yield response
            return
        # Parquet needs random access: spool to a temporary file first.
        with tempfile.TemporaryFile(dir=storage.cache_root()) as spool:
            shutil.copyfileobj(response, spool)
            spool.seek(0)
            yield spool


def _iter_hf(rest: str, source: DataSource) -> Iterator[RawItem]:
    repo_type, repo_id, revision = storage.parse_hf(rest)
    if repo_type != "dataset":
        raise invalid_input(f"hf:// sources must be datasets: hf://datasets/ORG/NAME, got {rest}")
    try:
        import datasets

        stream = datasets.load_dataset(
            repo_id,
            split=source.split or "train",
            revision=revision,
            streaming=True,
            token=os.environ.get("HF_TOKEN") or None,
        )
        iterator = iter(stream)
    except Exception as exc:
        raise WorkloadError("StorageError", f"cannot open hf://{rest}: {exc}") from exc
    for row in iterator:
        yield dict(row)


def input_checksums(source: DataSource) -> list[InputChecksum]:
    """The checksum of every file of ``source``: ``sha256:`` of the bytes for local and
    http(s) files, the object's ETag and size for s3 (no second download), the dataset commit
    (``git:``) for ``hf://`` sources. This is what the version hashes, so a changed byte
    anywhere in the input gives a new version; a local file is keyed by its path relative to
    the source (:mod:`.inputs`), so the folder the corpus lies in does not count."""
    scheme, rest = storage.split_uri(source.uri)
    if scheme == "hf":
        uri = display_uri(source.uri)
        return [InputChecksum(uri, uri, _hf_commit(rest))]
    if scheme in ("file", "pvc"):
        path = storage.local_path(source.uri)
        assert path is not None
        root = local_root(path)
        return [local_checksum(scheme, root, Path(f.name)) for f in list_files(source)]
    fs: Any = storage.s3_filesystem() if scheme == "s3" else None
    return [_remote_checksum(file, fs) for file in list_files(source)]


def _remote_checksum(file: SourceFile, fs: Any) -> InputChecksum:
    """An s3 object's ETag and size (when it has one), else the sha256 of the bytes read."""
    uri = display_uri(file.name)
    if fs is not None:
        try:
            info = fs.info(file.name.removeprefix("s3://"))
        except Exception as exc:
            raise WorkloadError("StorageError", f"cannot stat {file.name}: {exc}") from exc
        etag = str(info.get("ETag") or info.get("etag") or "").strip('"')
        if etag:
            return InputChecksum(uri, uri, f"etag:{etag}:{info.get('size')}")
    digest = hashlib.sha256()
    with file.open() as raw:
        while chunk := raw.read(1 << 20):
            digest.update(chunk)
    return InputChecksum(uri, uri, "sha256:" + digest.hexdigest())


def _hf_commit(rest: str) -> str:
    _, repo_id, revision = storage.parse_hf(rest)
    try:
        from huggingface_hub import HfApi

        info = HfApi(token=os.environ.get("HF_TOKEN") or None).dataset_info(
            repo_id, revision=revision
        )
    except Exception as exc:
        raise WorkloadError("StorageError", f"cannot resolve hf://{rest}: {exc}") from exc
    return f"git:{info.sha}"
