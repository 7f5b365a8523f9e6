"""A FeedbackLoop's feedback store as the collector writes it: committed JSONL segments.

Layout, under the loop's prefix (``{store}/{namespace}/{loop}``, the loop's
``spec.feedback.uri``)::

    collector/2026-12-02/20261202T143512.123456Z-<writer>.jsonl

A *segment* is one file of complete JSONL lines, created under its final name by one writer
process and only ever appended to by it. On a local or PVC store a commit is one ``pwrite`` of
complete lines at the segment's end followed by ``fdatasync`` (and, when the commit created the
segment, an ``fsync`` of its folder): a record is acknowledged only after that. The loop's
reader consumes complete lines only (a line is complete once its newline is written), so a
write cut short shows no partial record; readers resume at their cursor's byte offset because
the file only grows. A write that fails or is cut by a crash can leave a *torn tail* (bytes
after the last newline): the segment is then abandoned, and the next writer to take the store
lock truncates the tail back to the last newline before anything else is committed (complete
lines of the cut write stay: they are synced and their ids indexed, so a client's retry is a
duplicate, and a reader may have read them already). On S3 an object cannot be appended to:
each commit PUTs the whole segment object (its content is kept in memory while it is open),
so a reader sees the old or the new version and the new one only extends the old.

A segment is closed (a new one opened) when the next commit would make it larger than
``segment_bytes`` or once it is ``segment_seconds`` old. Its name never changes: sealing a
segment is closing it, its last commit being already durable (renaming it would change the key
of the reader's cursor and have it read the segment twice).

Exactly once: every line carries its record ``id``. :class:`LoopStore` keeps the ids committed
within the retention window (rebuilt from the segments at start-up, so a restarted collector
still knows them). On a local or PVC store several replicas serialize their commits with an
``flock`` on ``collector/.lock``, whose generation counter tells a replica that another one
committed: it then reads the new lines of the other replicas' segments before filtering its
batch, so an id is written once across replicas too. Every write to a segment happens under
that lock, so a segment with a torn tail seen while holding it is not being written.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import re
import socket
import struct
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path, PurePosixPath
from typing import Any

from kubetune.api.contract import PVC_ROOT_ENV

COLLECTOR_DIR = "collector"
DEFAULT_PVC_ROOT = "/mnt/pvc"
_TMP_MAX_AGE = 60.0
_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def writer_id() -> str:
    """This process's writer name: the host (pod) name and a random suffix."""
    host = re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname())[:40] or "collector"
    return f"{host}-{uuid.uuid4().hex[:6]}"


def loop_uri(store: str, namespace: str, loop: str) -> str:
    return f"{store.rstrip('/')}/{namespace}/{loop}"


@dataclass(frozen=True)
class SegmentInfo:
    relpath: str
    size: int
    mtime: float


class Backend:
    """Where segments live: list, read from an offset, append durably, repair, lock."""

    def list_segments(self, since_day: str) -> list[SegmentInfo]:
        raise NotImplementedError

    def read(self, relpath: str, offset: int) -> bytes:
        raise NotImplementedError

    def append(self, relpath: str, committed: int, data: bytes) -> None:
        """Durably make ``relpath`` its first ``committed`` bytes followed by ``data``.

        ``committed`` is 0 for a segment this call creates; otherwise it is the length this
        writer committed last (the segment is open: only this writer appends to it).
        """
        raise NotImplementedError

    def close(self) -> None:
        """Seal the open segment: nothing more is appended to it."""

    def truncate(self, relpath: str, size: int) -> None:
        """Cut a torn tail (bytes after the last complete line) of an abandoned segment."""

    def sync(self, relpath: str) -> None:
        """Make what ``relpath`` holds durable (lines a writer wrote but may not have synced)."""

    @contextlib.contextmanager
    def locked(self) -> Iterator[int]:
        """Hold the store's commit lock; yield how many commits other holders made since ours."""
        yield 0

    def cleanup(self) -> int:
        return 0


class LocalBackend(Backend):
    """file:// and pvc:// stores (a PVC is mounted at ``$KUBETUNE_PVC_ROOT/CLAIM``)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.base = root / COLLECTOR_DIR
        self._generation = -1
        self._fd = -1
        self._fd_relpath: str | None = None
        self._lock_fd = -1

    def list_segments(self, since_day: str) -> list[SegmentInfo]:
        out: list[SegmentInfo] = []
        try:
            days = sorted(d for d in os.listdir(self.base) if _DAY.match(d) and d >= since_day)
        except FileNotFoundError:
            return out
        for day in days:
            with os.scandir(self.base / day) as entries:
                for entry in entries:
                    if entry.name.startswith(".") or not entry.name.endswith(".jsonl"):
                        continue
                    stat = entry.stat()
                    relpath = f"{COLLECTOR_DIR}/{day}/{entry.name}"
                    out.append(SegmentInfo(relpath, stat.st_size, stat.st_mtime))
        return out

    def read(self, relpath: str, offset: int) -> bytes:
        with (self.root / relpath).open("rb") as handle:
            handle.seek(offset)
            return handle.read()

    def append(self, relpath: str, committed: int, data: bytes) -> None:
        created = self._fd_relpath != relpath
        if created:
            if committed:
                raise RuntimeError(f"{relpath} is not this writer's open segment")
            self._create(relpath)
        try:
            view, offset = memoryview(data), committed
            while view:
                written = os.pwrite(self._fd, view, offset)
                view, offset = view[written:], offset + written
            _fdatasync(self._fd)
            if created:
                _fsync_dir((self.root / relpath).parent)  # the segment's name is durable too
        except BaseException:
            self.close()  # abandoned: a torn tail is cut under the lock before the next write
            raise

    def _create(self, relpath: str) -> None:
        self.close()
        final = self.root / relpath
        folder = final.parent
        if not folder.is_dir():
            folder.mkdir(parents=True, exist_ok=True)
            _fsync_dir(folder.parent)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
        self._fd = os.open(final, flags, 0o644)
        self._fd_relpath = relpath

    def close(self) -> None:
        if self._fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self._fd)
        self._fd, self._fd_relpath = -1, None

    def truncate(self, relpath: str, size: int) -> None:
        fd = os.open(self.root / relpath, os.O_WRONLY)
        try:
            os.ftruncate(fd, size)
            os.fsync(fd)
        finally:
            os.close(fd)

    def sync(self, relpath: str) -> None:
        fd = os.open(self.root / relpath, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    @contextlib.contextmanager
    def locked(self) -> Iterator[int]:
        if self._lock_fd < 0:  # kept open: a commit costs no open/close of the lock file
            self.base.mkdir(parents=True, exist_ok=True)
            flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0)
            self._lock_fd = os.open(self.base / ".lock", flags, 0o644)
        fd = self._lock_fd
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            raw = os.pread(fd, 8, 0)
            current = struct.unpack("<Q", raw)[0] if len(raw) == 8 else 0
            others = 0 if self._generation < 0 else current - self._generation
            if self._generation < 0 and current:
                others = 1  # first commit of this process: others may have written since start
            os.pwrite(fd, struct.pack("<Q", current + 1), 0)
            self._generation = current + 1
            yield others
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)

    def cleanup(self) -> int:
        """Remove temporary files that collectors before 0.2 (whole-segment rewrites) left."""
        removed = 0
        now = time.time()
        for tmp in self.base.glob("*/.*.tmp-*") if self.base.is_dir() else []:
            with contextlib.suppress(OSError):
                if now - tmp.stat().st_mtime > _TMP_MAX_AGE:
                    tmp.unlink()
                    removed += 1
        return removed


def _fdatasync(fd: int) -> None:
    sync = getattr(os, "fdatasync", os.fsync)  # fdatasync also flushes the grown file size
    sync(fd)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError as exc:  # some filesystems cannot fsync a directory
        if exc.errno not in (errno.EINVAL, errno.EBADF):
            raise
    finally:
        os.close(fd)


class S3Backend(Backend):
    """s3:// stores through fsspec/s3fs: each commit PUTs the whole segment object.

    Objects cannot be appended to, so the open segment's content stays in memory (at most
    ``segment_bytes``) and every commit replaces the object with a longer version; one object
    per segment keeps the reader's listing short. S3 has no lock: run one collector replica
    per S3 store for exactly-once across replicas (restarts are covered by the start-up scan).
    """

    def __init__(self, prefix: str) -> None:
        import fsspec  # type: ignore[import-untyped]

        options: dict[str, Any] = {}
        endpoint = os.environ.get("AWS_ENDPOINT_URL") or os.environ.get("AWS_ENDPOINT_URL_S3")
        if endpoint:
            options["client_kwargs"] = {"endpoint_url": endpoint}
        self.fs: Any = fsspec.filesystem("s3", **options)
        self.prefix = prefix.strip("/")
        self._open: str | None = None
        self._content = b""

    def list_segments(self, since_day: str) -> list[SegmentInfo]:
        base = f"{self.prefix}/{COLLECTOR_DIR}"
        self.fs.invalidate_cache()
        try:
            found = self.fs.find(base, detail=True)
        except FileNotFoundError:
            return []
        out = []
        for name, info in sorted(found.items()):
            relpath = name[len(self.prefix) :].lstrip("/")
            parts = PurePosixPath(relpath).parts
            if len(parts) != 3 or parts[1] < since_day or parts[2].startswith("."):
                continue
            modified = info.get("LastModified")
            mtime = modified.timestamp() if isinstance(modified, datetime) else time.time()
            out.append(SegmentInfo(relpath, int(info.get("size") or 0), mtime))
        return out

    def read(self, relpath: str, offset: int) -> bytes:
        data: bytes = self.fs.cat_file(f"{self.prefix}/{relpath}", start=offset or None)
        return data

    def append(self, relpath: str, committed: int, data: bytes) -> None:
        if self._open != relpath or len(self._content) != committed:
            if committed:
                raise RuntimeError(f"{relpath} is not this writer's open segment")
            self._open, self._content = relpath, b""
        content = self._content + data
        try:
            self.fs.pipe_file(f"{self.prefix}/{relpath}", content)
        except BaseException:
            self.close()
            raise
        self._content = content

    def close(self) -> None:
        self._open, self._content = None, b""


def backend_for(uri: str) -> Backend:
    scheme, sep, rest = uri.partition("://")
    if not sep:
        raise ValueError(f"{uri!r} is not a URI (file://, pvc:// or s3://)")
    if scheme == "file":
        return LocalBackend(Path(rest))
    if scheme == "pvc":
        return LocalBackend(Path(os.environ.get(PVC_ROOT_ENV, DEFAULT_PVC_ROOT)) / rest)
    if scheme == "s3":
        return S3Backend(rest)
    raise ValueError(f"unsupported store scheme {scheme!r}: use file://, pvc:// or s3://")


def _stamp(now: float) -> str:
    return datetime.fromtimestamp(now, UTC).strftime("%Y%m%dT%H%M%S.%fZ")


def _day(now: float) -> str:
    return datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%d")


def ids_of(data: bytes) -> Iterator[str]:
    """The record ids of complete segment lines."""
    for raw in data.splitlines():
        if not raw.strip():
            continue
        with contextlib.suppress(ValueError):
            record = json.loads(raw)
            if isinstance(record, dict) and isinstance(record.get("id"), str):
                yield record["id"]


class LoopStore:
    """The segments and the committed-id index of one FeedbackLoop (blocking calls)."""

    def __init__(
        self,
        backend: Backend,
        writer: str,
        segment_bytes: int = 1 << 20,
        segment_seconds: float = 300.0,
        retention_seconds: float = 7 * 86400.0,
        max_ids: int = 5_000_000,
    ) -> None:
        self.backend = backend
        self.writer = writer
        self.segment_bytes = segment_bytes
        self.segment_seconds = segment_seconds
        self.retention = retention_seconds
        self.max_ids = max_ids
        self.ids: dict[str, float] = {}  # id -> commit time, in commit order
        self._known: dict[str, int] = {}  # segment -> bytes whose ids are in the index
        self._open: str | None = None
        self._size = 0  # committed bytes of the open segment
        self._opened_at = 0.0
        self.commits = 0
        self.torn_tails = 0  # torn tails cut (a crashed or failed write before)
        self._dirty = False

    def _since_day(self) -> str:
        return (datetime.now(UTC) - timedelta(seconds=self.retention)).strftime("%Y-%m-%d")

    def load(self) -> int:
        """Repair torn tails and read the ids of every segment within retention (how many)."""
        self.backend.cleanup()
        with self.backend.locked():
            return self.refresh()

    def refresh(self) -> int:
        """Index the lines other writers (or an earlier process) committed since last time.

        Call it holding the store lock: a segment that ends in a torn tail is then not being
        written (every write happens under the lock), so the tail is cut.
        """
        added = 0
        for info in self.backend.list_segments(self._since_day()):
            seen = self._known.get(info.relpath, 0)
            if info.size == seen:
                continue
            if info.size < seen:
                seen = 0  # rewritten: read it all again
            # A writer that died (or failed) between its write and its fdatasync left lines
            # that may not be on disk yet: sync them before their ids count as committed.
            self.backend.sync(info.relpath)
            data = self.backend.read(info.relpath, seen)
            complete = data.rfind(b"\n") + 1
            for record_id in ids_of(data[:complete]):
                if record_id not in self.ids:
                    self.ids[record_id] = info.mtime
                    added += 1
            self._known[info.relpath] = seen + complete
            if complete < len(data) and info.relpath != self._open:
                self.backend.truncate(info.relpath, seen + complete)
                self.torn_tails += 1
        self._trim()
        return added

    def _trim(self) -> None:
        cutoff = time.time() - self.retention
        while self.ids:
            first = next(iter(self.ids))
            if self.ids[first] >= cutoff and len(self.ids) <= self.max_ids:
                break
            del self.ids[first]

    def mark_dirty(self) -> None:
        """After a failed commit: the segment may hold part of it; abandon it, re-read later."""
        self.backend.close()
        self._open = None
        self._size = 0
        self._dirty = True

    def close(self) -> None:
        """Seal the open segment (its last commit is durable already)."""
        self.backend.close()
        self._open = None
        self._size = 0

    def commit(self, batch: list[tuple[str, bytes]]) -> list[bool]:
        """Write the lines whose id is new, durably; returns for each one whether it was new."""
        with self.backend.locked() as others:
            if others or self._dirty:
                self.refresh()
                self._dirty = False
            fresh: list[bool] = []
            chosen: dict[str, bool] = {}
            payload = bytearray()
            for record_id, line in batch:
                new = record_id not in self.ids and record_id not in chosen
                fresh.append(new)
                if new:
                    chosen[record_id] = True
                    payload += line
            if payload:
                self._append(bytes(payload))
                now = time.time()
                for record_id in chosen:
                    self.ids[record_id] = now
                if len(self.ids) > self.max_ids:
                    self._trim()
            return fresh

    def _append(self, payload: bytes) -> None:
        now = time.time()
        if (
            self._open is None
            or self._size + len(payload) > self.segment_bytes
            or now - self._opened_at >= self.segment_seconds
        ):
            self.close()
            self._open = f"{COLLECTOR_DIR}/{_day(now)}/{_stamp(now)}-{self.writer}.jsonl"
            self._opened_at = now
        self.backend.append(self._open, self._size, payload)
        self._size += len(payload)
        self._known[self._open] = self._size
        self.commits += 1

    @property
    def open_segment_bytes(self) -> int:
        return self._size
