"""The feedback cursor (``cursor.json``): how many complete lines of each file were seen.

``{"version": 1, "files": {"<relative path>": {"lines": N, "bytes": B}}}``: the first ``N``
complete lines of the file (``B`` bytes of its content, decompressed for ``.gz``) are consumed;
records beyond the cursor are lines ``N+1..`` of known files and every line of new files.

A since-cursor that cannot be read is ``CursorUnreadable`` (storage may be flaky: retry); one
that reads but is not a valid cursor is ``InvalidCursor`` (retrying cannot help).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from kubetune_workloads import storage
from kubetune_workloads.errors import WorkloadError, invalid_input

CURSOR_VERSION = 1
MAX_CURSOR_BYTES = 64 << 20


@dataclass(frozen=True)
class FilePosition:
    """The first ``lines`` complete lines of a file, ``bytes`` bytes long, were seen."""

    lines: int
    bytes: int


class Cursor:
    """File positions by relative path; :meth:`advance` moves one file forward."""

    def __init__(self, files: dict[str, FilePosition] | None = None) -> None:
        self.files: dict[str, FilePosition] = dict(files or {})

    def position(self, relpath: str) -> FilePosition | None:
        return self.files.get(relpath)

    def advance(self, relpath: str, position: FilePosition) -> None:
        self.files[relpath] = position

    def copy(self) -> Cursor:
        return Cursor(self.files)

    def to_json(self) -> str:
        ordered = sorted(self.files.items())
        files = {path: {"lines": pos.lines, "bytes": pos.bytes} for path, pos in ordered}
        return json.dumps({"version": CURSOR_VERSION, "files": files}, indent=2) + "\n"


def _invalid(uri: str, why: str) -> WorkloadError:
    return WorkloadError("InvalidCursor", f"since-cursor {uri} is not a valid cursor: {why}")


def _count(value: Any, what: str, uri: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise _invalid(uri, f"{what} must be a non-negative integer, got {value!r}")
    return value


def _check_relpath(path: Any, uri: str) -> str:
    if not isinstance(path, str) or not path:
        raise _invalid(uri, f"file names must be non-empty strings, got {path!r}")
    pure = PurePosixPath(path)
    if pure.is_absolute() or ".." in pure.parts or "\\" in path:
        raise _invalid(uri, f"{path!r} is not a relative path under the feedback prefix")
    return path


def parse_cursor(text: str | bytes, uri: str) -> Cursor:
    """A :class:`Cursor` from the JSON text of ``uri``; ``InvalidCursor`` when malformed."""
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise _invalid(uri, f"not JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise _invalid(uri, f"expected an object, got a JSON {type(data).__name__}")
    if data.get("version") != CURSOR_VERSION:
        raise _invalid(uri, f"version must be {CURSOR_VERSION}, got {data.get('version')!r}")
    files = data.get("files")
    if not isinstance(files, dict):
        raise _invalid(uri, "'files' must be an object of relative path -> {lines, bytes}")
    positions: dict[str, FilePosition] = {}
    for path, entry in files.items():
        relpath = _check_relpath(path, uri)
        if not isinstance(entry, dict):
            raise _invalid(uri, f"entry of {relpath!r} must be an object with lines and bytes")
        lines = _count(entry.get("lines"), f"{relpath}: lines", uri)
        size = _count(entry.get("bytes"), f"{relpath}: bytes", uri)
        if lines > size or (size > 0) != (lines > 0):
            # every complete line ends with a newline byte, so N lines take at least N bytes
            raise _invalid(uri, f"{relpath}: {lines} lines cannot take {size} bytes")
        positions[relpath] = FilePosition(lines=lines, bytes=size)
    return Cursor(positions)


def read_cursor(uri: str | None) -> Cursor:
    """The since-cursor at ``uri`` (a cursor.json); an empty cursor when ``uri`` is None."""
    if uri is None:
        return Cursor()
    return parse_cursor(_read_bytes(uri), uri)


def _read_bytes(uri: str) -> bytes:
    path = storage.local_path(uri)
    if path is not None:
        try:
            with path.open("rb") as handle:
                data = handle.read(MAX_CURSOR_BYTES + 1)
        except OSError as exc:
            raise WorkloadError(
                "CursorUnreadable", f"cannot read since-cursor {uri}: {exc.strerror or exc}"
            ) from exc
        return _bounded(data, uri)
    scheme, rest = storage.split_uri(uri)
    if scheme != "s3":
        raise invalid_input(f"since-cursor {uri}: cursors are read from file://, pvc:// or s3://")
    fs: Any = storage.s3_filesystem()
    try:
        fs.invalidate_cache(rest)
        with fs.open(rest, "rb") as handle:
            payload: bytes = handle.read(MAX_CURSOR_BYTES + 1)
    except Exception as exc:
        raise WorkloadError(
            "CursorUnreadable", f"cannot read since-cursor {uri}: {type(exc).__name__}: {exc}"
        ) from exc
    return _bounded(payload, uri)


def _bounded(data: bytes, uri: str) -> bytes:
    if len(data) > MAX_CURSOR_BYTES:
        raise _invalid(uri, f"larger than {MAX_CURSOR_BYTES} bytes")
    return data
