"""A FeedbackLoop's feedback store as the collector writes it: committed JSONL segments.

Layout, under the loop's prefix (``{store}/{namespace}/{loop}``, the loop's
``spec.feedback.uri``)::

    collector/2026-12-02/20261202T143512.123456Z-<writer>.jsonl

A *segment* is one file of complete JSONL lines. Every commit writes the open segment's content
plus the new lines to a hidden temporary name (``.<name>.tmp-*``, skipped by readers), flushes
and fsyncs it, renames it over the segment and fsyncs the directory: a reader sees the old or
the new version, both made of complete lines, and the new one only extends the old (the loop's
cursor resumes at its byte offset). On S3 each commit is one PUT of the whole segment object.
A segment is closed (a new one opened) when the next commit would make it larger than
``segment_bytes`` or once it is ``segment_seconds`` old; its content stays in memory until
then, so memory is bounded by ``segment_bytes`` per loop.

Exactly once: every line carries its record ``id``. :class:`LoopStore` keeps the ids committed
within the retention window (rebuilt from the segments at start-up, so a restarted collector
still knows them). On a local or PVC store several replicas serialize their commits with an
``flock`` on ``collector/.lock``, whose generation counter tells a replica that another one
committed: it then reads the new lines of the other replicas' segments before filtering its
batch, so an id is written once across replicas too.
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
    """Where segments live: list, read from an offset, replace atomically, lock."""

    def list_segments(self, since_day: str) -> list[SegmentInfo]:
        raise NotImplementedError

    def read(self, relpath: str, offset: int) -> bytes:
        raise NotImplementedError

    def replace(self, relpath: str, data: bytes) -> None:
        raise NotImplementedError

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

    def replace(self, relpath: str, data: bytes) -> None:
        final = self.root / relpath
        folder = final.parent
        if not folder.is_dir():
            folder.mkdir(parents=True, exist_ok=True)
            _fsync_dir(folder.parent)
        tmp = folder / f".{final.name}.tmp-{uuid.uuid4().hex[:8]}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        except BaseException:
            os.close(fd)
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
        os.close(fd)
        os.replace(tmp, final)
        _fsync_dir(folder)

    @contextlib.contextmanager
    def locked(self) -> Iterator[int]:
        self.base.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.base / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            raw = os.pread(fd, 8, 0)
            current = struct.unpack("<Q", raw)[0] if len(raw) == 8 else 0
            others = 0 if self._generation < 0 else current - self._generation
            if self._generation < 0 and current:
                others = 1  # first commit of this process: others may have written since start
            os.pwrite(fd, struct.pack("<Q", current + 1), 0)
            self._generation = current + 1
            yield others
        finally:
            os.close(fd)  # releases the flock

    def cleanup(self) -> int:
        """Remove temporary files a killed writer left (older than a minute)."""
        removed = 0
        now = time.time()
        for tmp in self.base.glob("*/.*.tmp-*") if self.base.is_dir() else []:
            with contextlib.suppress(OSError):
                if now - tmp.stat().st_mtime > _TMP_MAX_AGE:
                    tmp.unlink()
                    removed += 1
        return removed


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

    S3 has no lock: run one collector replica per S3 store for exactly-once across replicas
    (restarts are covered by the start-up scan).
    """

    def __init__(self, prefix: str) -> None:
        import fsspec  # type: ignore[import-untyped]

        options: dict[str, Any] = {}
        endpoint = os.environ.get("AWS_ENDPOINT_URL") or os.environ.get("AWS_ENDPOINT_URL_S3")
        if endpoint:
            options["client_kwargs"] = {"endpoint_url": endpoint}
        self.fs: Any = fsspec.filesystem("s3", **options)
        self.prefix = prefix.strip("/")

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

    def replace(self, relpath: str, data: bytes) -> None:
        self.fs.pipe_file(f"{self.prefix}/{relpath}", data)


def backend_for(uri: str) -> Backend:
    scheme, sep, rest = uri.partition("://")
    if not sep:
        raise ValueError(f"{uri!r} is not a URI (file://, pvc:// or s3://)")
    if scheme == "file":
        return LocalBackend(Path(rest))
    if scheme == "pvc":
        return LocalBackend(Path(os.environ.get("KUBETUNE_PVC_ROOT", DEFAULT_PVC_ROOT)) / rest)
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
        self._content = bytearray()
        self._opened_at = 0.0
        self.segments_written = 0
        self._dirty = False

    def _since_day(self) -> str:
        return (datetime.now(UTC) - timedelta(seconds=self.retention)).strftime("%Y-%m-%d")

    def load(self) -> int:
        """Read the ids of every segment within retention; returns how many were read."""
        self.backend.cleanup()
        return self.refresh()

    def refresh(self) -> int:
        """Index the lines other writers (or an earlier process) committed since last time."""
        added = 0
        for info in self.backend.list_segments(self._since_day()):
            seen = self._known.get(info.relpath, 0)
            if info.size == seen:
                continue
            if info.size < seen:
                seen = 0  # rewritten: read it all again
            data = self.backend.read(info.relpath, seen)
            complete = data.rfind(b"\n") + 1
            for record_id in ids_of(data[:complete]):
                if record_id not in self.ids:
                    self.ids[record_id] = info.mtime
                    added += 1
            self._known[info.relpath] = seen + complete
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
        """After a failed commit: the segment may or may not hold it; close it, re-read later."""
        self._open = None
        self._content = bytearray()
        self._dirty = True

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
                self._write(bytes(payload))
                now = time.time()
                for record_id in chosen:
                    self.ids[record_id] = now
                if len(self.ids) > self.max_ids:
                    self._trim()
            return fresh

    def _write(self, payload: bytes) -> None:
        now = time.time()
        if (
            self._open is None
            or len(self._content) + len(payload) > self.segment_bytes
            or now - self._opened_at >= self.segment_seconds
        ):
            self._open = f"{COLLECTOR_DIR}/{_day(now)}/{_stamp(now)}-{self.writer}.jsonl"
            self._content = bytearray()
            self._opened_at = now
        content = self._content + payload
        self.backend.replace(self._open, bytes(content))
        self._content = content
        self._known[self._open] = len(content)
        self.segments_written += 1

    @property
    def open_segment_bytes(self) -> int:
        return len(self._content)
