"""Artifact URIs inside a pod: read inputs, write outputs atomically.

- ``file:///path``: a local path.
- ``pvc://CLAIM/path``: a mounted PersistentVolumeClaim, at ``$KUBETUNE_PVC_ROOT/CLAIM/path``
  (the operator mounts claims at ``/mnt/pvc/CLAIM``).
- ``s3://bucket/prefix``: fetched with fsspec/s3fs into a local cache; outputs are built
  locally and uploaded, manifest last. Credentials come from the standard AWS env variables
  (set from a Secret); ``AWS_ENDPOINT_URL`` points at S3-compatible stores.
- ``hf://ORG/NAME[@REV]`` (models) and ``hf://datasets/ORG/NAME[@REV]``: downloaded with
  huggingface_hub (token from ``HF_TOKEN``), read-only.

Outputs are written to a temporary sibling directory and renamed into place once complete, so a
crash never leaves a directory that looks complete.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import IO, Any, Protocol

from kubetune.api.contract import CACHE_ENV, PVC_ROOT_ENV

from kubetune_workloads.errors import WorkloadError, invalid_input

DEFAULT_PVC_ROOT = "/mnt/pvc"


def split_uri(uri: str) -> tuple[str, str]:
    scheme, sep, rest = uri.partition("://")
    if not sep:
        raise invalid_input(f"{uri!r} is not a URI (expected SCHEME://PATH)")
    return scheme, rest


def pvc_root() -> Path:
    return Path(os.environ.get(PVC_ROOT_ENV, DEFAULT_PVC_ROOT))


def cache_root() -> Path:
    root = Path(os.environ.get(CACHE_ENV, Path(tempfile.gettempdir()) / "kubetune-cache"))
    root.mkdir(parents=True, exist_ok=True)
    return root


def local_path(uri: str) -> Path | None:
    """The local path of a file:// or pvc:// URI; None for remote schemes."""
    scheme, rest = split_uri(uri)
    if scheme == "file":
        # file:///abs/path is absolute; file://rel/path is relative to the working directory
        return Path(rest)
    if scheme == "pvc":
        return pvc_root() / rest
    return None


def s3_options() -> dict[str, object]:
    """fsspec options for s3://, from the standard AWS environment variables."""
    opts: dict[str, object] = {}
    endpoint = os.environ.get("AWS_ENDPOINT_URL") or os.environ.get("AWS_ENDPOINT_URL_S3")
    if endpoint:
        opts["client_kwargs"] = {"endpoint_url": endpoint}
    return opts


class S3FileSystem(Protocol):
    """The methods of fsspec's s3 filesystem (s3fs) that the workloads call; fsspec ships no
    types, so this is where its values get theirs."""

    def invalidate_cache(self, path: str | None = None) -> None: ...
    def find(self, path: str) -> list[str]: ...
    def glob(self, path: str) -> list[str]: ...
    def isdir(self, path: str) -> bool: ...
    def exists(self, path: str) -> bool: ...
    def info(self, path: str) -> dict[str, Any]: ...
    def open(self, path: str, mode: str = "rb") -> io.BufferedIOBase: ...
    def get(self, rpath: str, lpath: str, recursive: bool = False) -> None: ...
    def put_file(self, lpath: str, rpath: str) -> None: ...
    def rm(self, path: str, recursive: bool = False) -> None: ...


def s3_filesystem() -> S3FileSystem:
    """fsspec's s3 filesystem, configured from the environment (:func:`s3_options`)."""
    import fsspec

    fs: S3FileSystem = fsspec.filesystem("s3", **s3_options())
    return fs


Opener = Callable[[], AbstractContextManager[IO[bytes]]]
"""Opens one listed file for reading, as a context manager (errors surface on entering it)."""
_S3_BUFFER = 1 << 20


def s3_find(fs: S3FileSystem, prefix: str, uri: str) -> list[str]:
    """The names of the objects under ``prefix``, sorted, listed afresh (objects grow and
    appear between listings in one process); none when the prefix does not exist."""
    try:
        fs.invalidate_cache()
        return sorted(fs.find(prefix))
    except FileNotFoundError:
        return []
    except Exception as exc:
        raise WorkloadError("StorageError", f"cannot list {uri}: {exc}") from exc


def s3_opener(fs: S3FileSystem, name: str) -> Opener:
    """How to open the object ``name`` as a buffered binary stream (its ``readline`` takes a
    size limit). A vanished object raises FileNotFoundError, other failures StorageError."""

    @contextlib.contextmanager
    def opener() -> Iterator[IO[bytes]]:
        try:
            handle = fs.open(name, "rb")
        except FileNotFoundError:
            raise
        except Exception as exc:
            raise WorkloadError("StorageError", f"cannot read s3://{name}: {exc}") from exc
        with handle:
            yield io.BufferedReader(handle, _S3_BUFFER)

    return opener


def parse_hf(rest: str) -> tuple[str, str, str | None]:
    """``[datasets/]ORG/NAME[@REV][/subpath]`` -> (repo_type, repo_id, revision)."""
    repo_type = "model"
    if rest.startswith("datasets/"):
        repo_type, rest = "dataset", rest[len("datasets/") :]
    repo, _, revision = rest.partition("@")
    parts = repo.strip("/").split("/")
    if len(parts) < 2 or not all(parts[:2]):
        raise invalid_input(f"hf:// URI needs ORG/NAME, got {rest!r}")
    return repo_type, "/".join(parts[:2]), revision or None


def fetch(uri: str) -> Path:
    """A local path holding the content of ``uri`` (downloading remote artifacts once)."""
    path = local_path(uri)
    if path is not None:
        if not path.exists():
            raise invalid_input(f"{uri} does not exist (looked at {path})")
        return path
    scheme, rest = split_uri(uri)
    if scheme == "s3":
        return _fetch_s3(rest)
    if scheme == "hf":
        return _fetch_hf(rest)
    raise invalid_input(f"cannot read {uri!r}: unsupported scheme {scheme!r}")


def _fetch_s3(rest: str) -> Path:
    fs = s3_filesystem()
    target = cache_root() / "s3" / rest.strip("/")
    if target.exists():
        return target
    tmp = target.with_name(f".{target.name}.tmp-{uuid.uuid4().hex[:8]}")
    tmp.parent.mkdir(parents=True, exist_ok=True)
    try:
        if fs.isdir(rest):
            fs.get(rest.rstrip("/") + "/", str(tmp), recursive=True)
        elif fs.exists(rest):
            fs.get(rest, str(tmp))
        else:
            raise invalid_input(f"s3://{rest} does not exist")
    except WorkloadError:
        raise
    except Exception as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise WorkloadError("StorageError", f"cannot read s3://{rest}: {exc}") from exc
    tmp.rename(target)
    return target


def _fetch_hf(rest: str) -> Path:
    repo_type, repo_id, revision = parse_hf(rest)
    try:
        from huggingface_hub import snapshot_download

        path = snapshot_download(
            repo_id,
            repo_type=repo_type,
            revision=revision,
            token=os.environ.get("HF_TOKEN") or None,
            cache_dir=str(cache_root() / "hf"),
        )
    except Exception as exc:
        raise WorkloadError("StorageError", f"cannot download hf://{rest}: {exc}") from exc
    return Path(path)


@contextlib.contextmanager
def output_dir(uri: str) -> Iterator[Path]:
    """Yield a fresh temporary directory; on success it becomes the artifact at ``uri``.

    Local outputs are renamed into place atomically (an existing artifact is replaced only
    once the new one is complete). S3 outputs are uploaded file by file, the manifest last.
    On failure the temporary directory is removed and nothing appears at ``uri``.
    """
    final = local_path(uri)
    if final is not None:
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = final.parent / f".{final.name}.tmp-{uuid.uuid4().hex[:8]}"
    else:
        tmp = Path(tempfile.mkdtemp(prefix="kubetune-out-", dir=cache_root()))
    tmp.mkdir(parents=True, exist_ok=True)
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if final is not None:
        _replace_dir(tmp, final)
    else:
        _upload(tmp, uri)
        shutil.rmtree(tmp, ignore_errors=True)


def _replace_dir(tmp: Path, final: Path) -> None:
    if final.exists():
        old = final.parent / f".{final.name}.old-{uuid.uuid4().hex[:8]}"
        final.rename(old)
        tmp.rename(final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        tmp.rename(final)


def _upload(src: Path, uri: str) -> None:
    from kubetune.api.steps import MANIFEST_FILE

    scheme, rest = split_uri(uri)
    if scheme != "s3":
        raise invalid_input(f"cannot write to {uri!r}: outputs go to file://, pvc:// or s3://")
    fs = s3_filesystem()
    files = sorted(p for p in src.rglob("*") if p.is_file())
    files.sort(key=lambda p: p.name == MANIFEST_FILE)  # manifest last: marks completeness
    try:
        for path in files:
            fs.put_file(str(path), f"{rest.rstrip('/')}/{path.relative_to(src).as_posix()}")
    except Exception as exc:
        raise WorkloadError("StorageError", f"cannot upload to {uri}: {exc}") from exc
