"""The feedback files under a prefix: every ``*.jsonl`` and ``*.jsonl.gz``, recursively.

Files are named by their path relative to the prefix (the cursor's keys) and listed in sorted
relative-path order. Hidden files and folders (a name starting with ``.``, e.g. a writer's
temporary file) are skipped. A prefix that does not exist (yet) holds no files. Listings and
reads bypass the artifact cache of :mod:`kubetune_workloads.storage`: feedback files grow.

A local file with a committed-length marker beside it (a collector's segment, see
:mod:`kubetune.api.segments`) is read only up to the length the marker gives: lines the
collector wrote but has not flushed to disk yet, which a power loss would take back, stay
unread until they are committed. (On S3 an object is replaced whole by each commit: no marker.)
"""

from __future__ import annotations

import io
import logging
import time
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Any

from kubetune.api.segments import decode_marker, marker_name

from kubetune_workloads import storage
from kubetune_workloads.errors import WorkloadError, invalid_input

FEEDBACK_SUFFIXES = (".jsonl", ".jsonl.gz")
_BUFFER = 1 << 20
_MARKER_READS = 5
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FeedbackFile:
    """One feedback file: its relative path, whether it is gzipped, and how to open it."""

    relpath: str
    compressed: bool
    open: storage.Opener


def is_feedback_file(relpath: str) -> bool:
    parts = PurePosixPath(relpath).parts
    if not parts or any(part.startswith(".") for part in parts):
        return False
    return parts[-1].lower().endswith(FEEDBACK_SUFFIXES)


def _file(relpath: str, opener: storage.Opener) -> FeedbackFile:
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
        if not is_feedback_file(root.name):
            return []
        return [file] if (file := _local_file(root.name, root)) is not None else []
    if not root.is_dir():
        log.warning("feedback source %s does not exist (yet): no feedback files", uri)
        return []
    files = []
    try:
        for path in root.rglob("*"):
            relpath = path.relative_to(root).as_posix()
            file = _local_file(relpath, path) if is_feedback_file(relpath) else None
            if file is not None and path.is_file():
                files.append(file)
    except OSError as exc:
        raise WorkloadError("StorageError", f"cannot list {uri}: {exc}") from exc
    return files


def _local_file(relpath: str, path: Path) -> FeedbackFile | None:
    """A local file, read up to its committed length when a collector marks one; None (skip it
    this time, its cursor kept) while its marker cannot be read whole."""
    marker = path.parent / marker_name(path.name)
    for _attempt in range(_MARKER_READS):
        try:
            data = marker.read_bytes()
        except FileNotFoundError:
            return _file(relpath, _local_opener(path, None))  # not a collector segment
        committed = decode_marker(data)
        if committed is not None:
            return _file(relpath, _local_opener(path, committed))
        time.sleep(0.01)  # caught while the collector rewrote it: read it again
    log.warning("%s: its committed-length marker is unreadable; skipped this time", relpath)
    return None


def _local_opener(path: Path, committed: int | None) -> storage.Opener:
    def opener() -> AbstractContextManager[IO[bytes]]:
        if committed is None:
            return path.open("rb")
        return io.BufferedReader(_Prefix(path, committed), _BUFFER)

    return opener


class _Prefix(io.RawIOBase):
    """The first ``length`` bytes of a file, as a seekable stream that ends there: the
    segment's committed lines, without what the collector wrote but has not flushed."""

    def __init__(self, path: Path, length: int) -> None:
        super().__init__()
        self._file = path.open("rb", buffering=0)
        self._length = length
        self._position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        wanted = min(len(view), self._length - self._position)
        if wanted <= 0:
            return 0
        self._file.seek(self._position)
        got = self._file.readinto(view[:wanted]) or 0
        self._position += got
        return got

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self._length}[whence]
        self._position = max(0, base + offset)
        return self._position

    def tell(self) -> int:
        return self._position

    def close(self) -> None:
        if not self.closed:
            self._file.close()
        super().close()


def _s3_files(uri: str, rest: str) -> list[FeedbackFile]:
    fs: Any = storage.s3_filesystem()
    prefix = rest.strip("/")
    names = storage.s3_find(fs, prefix, uri)
    if not names:
        log.warning("feedback source %s holds no objects (yet): no feedback files", uri)
    files = []
    for name in names:
        relpath = name[len(prefix) :].lstrip("/") or PurePosixPath(name).name
        if is_feedback_file(relpath):
            files.append(_file(relpath, storage.s3_opener(fs, name)))
    return files
