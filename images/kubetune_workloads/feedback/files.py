"""The feedback files under a prefix: every ``*.jsonl`` and ``*.jsonl.gz``, recursively.

Files are named by their path relative to the prefix (the cursor's keys) and listed in sorted
relative-path order. Hidden files and folders (a name starting with ``.``, e.g. a writer's
temporary file) are skipped. A prefix that does not exist (yet) holds no files. Listings and
reads bypass the artifact cache of :mod:`kubetune_workloads.storage`: feedback files grow.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Any

from kubetune_workloads import storage
from kubetune_workloads.errors import WorkloadError, invalid_input

FEEDBACK_SUFFIXES = (".jsonl", ".jsonl.gz")
_BUFFER = 1 << 20
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FeedbackFile:
    """One feedback file: its relative path, whether it is gzipped, and how to open it."""

    relpath: str
    compressed: bool
    open: Callable[[], AbstractContextManager[IO[bytes]]]


def is_feedback_file(relpath: str) -> bool:
    parts = PurePosixPath(relpath).parts
    if not parts or any(part.startswith(".") for part in parts):
        return False
    return parts[-1].lower().endswith(FEEDBACK_SUFFIXES)


def _file(relpath: str, opener: Callable[[], AbstractContextManager[IO[bytes]]]) -> FeedbackFile:
    return FeedbackFile(relpath, relpath.lower().endswith(".gz"), opener)


def list_feedback_files(uri: str) -> list[FeedbackFile]:
    """The feedback files under ``uri`` (file://, pvc:// or s3://), sorted by relative path."""
    path = storage.local_path(uri)
    if path is not None:
        files = _local_files(uri, path)
    else:
        scheme, rest = storage.split_uri(uri)
        if scheme != "s3":
            raise invalid_input(f"feedback source {uri}: use a file://, pvc:// or s3:// prefix")
        files = _s3_files(uri, rest)
    return sorted(files, key=lambda f: f.relpath)


def _local_files(uri: str, root: Path) -> list[FeedbackFile]:
    if root.is_file():
        return [_file(root.name, _local_opener(root))] if is_feedback_file(root.name) else []
    if not root.is_dir():
        log.warning("feedback source %s does not exist (yet): no feedback files", uri)
        return []
    files = []
    try:
        for path in root.rglob("*"):
            relpath = path.relative_to(root).as_posix()
            if is_feedback_file(relpath) and path.is_file():
                files.append(_file(relpath, _local_opener(path)))
    except OSError as exc:
        raise WorkloadError("StorageError", f"cannot list {uri}: {exc}") from exc
    return files


def _local_opener(path: Path) -> Callable[[], AbstractContextManager[IO[bytes]]]:
    def opener() -> AbstractContextManager[IO[bytes]]:
        return path.open("rb")

    return opener


def _s3_files(uri: str, rest: str) -> list[FeedbackFile]:
    fs: Any = storage.s3_filesystem()
    prefix = rest.strip("/")
    try:
        fs.invalidate_cache()  # objects grow between runs in one process: list afresh
        names = sorted(fs.find(prefix))
    except FileNotFoundError:
        names = []
    except Exception as exc:
        raise WorkloadError("StorageError", f"cannot list {uri}: {exc}") from exc
    if not names:
        log.warning("feedback source %s holds no objects (yet): no feedback files", uri)
    files = []
    for name in names:
        relpath = name[len(prefix) :].lstrip("/") or PurePosixPath(name).name
        if is_feedback_file(relpath):
            files.append(_file(relpath, _s3_opener(fs, name)))
    return files


def _s3_opener(fs: Any, name: str) -> Callable[[], AbstractContextManager[IO[bytes]]]:
    @contextmanager
    def opener() -> Iterator[IO[bytes]]:
        with fs.open(name, "rb") as handle:  # its readline() takes no size limit: buffer it
            yield io.BufferedReader(handle, _BUFFER)

    return opener
