"""A FeedbackLoop's feedback store as the collector writes it: committed JSONL segments.

Layout, under the loop's prefix (``{store}/{namespace}/{loop}``, the loop's
``spec.feedback.uri``)::

    collector/2026-12-02/20261202T143512.123456Z-<writer>.jsonl

A *segment* is one file of complete JSONL lines, created under its final name by one writer
process and only ever appended to by it. On a local or PVC store a commit is one ``pwrite`` of
complete lines at the segment's end followed by ``fdatasync`` (and, when the commit created the
segment, an ``fsync`` of its folder), then the rewrite of the segment's *committed-length
marker* (``.NAME.jsonl.committed`` beside it, :mod:`kubetune.api.segments`): a record is
acknowledged only after that. The loop's reader consumes complete lines up to the marker only,
so neither a write cut short nor lines written but not yet flushed (which a power loss would
take back) are ever read; readers resume at their cursor's byte offset because the file only
grows. A write that fails or is cut by a crash can leave lines beyond the marker and a *torn
tail* (bytes after the last newline): the segment is then abandoned, and the next writer to
take the store lock syncs it, truncates the tail back to the last newline and raises the marker
over the complete lines before anything else is committed (those lines stay: their ids are
indexed, so a client's retry is a duplicate, and the loop reads them). On S3 an object cannot
be appended to:
each commit PUTs the whole segment object (its content is kept in memory while it is open),
so a reader sees the old or the new version and the new one only extends the old.

A segment is closed (a new one opened) when the next commit would make it larger than
``segment_bytes`` or once it is ``segment_seconds`` old. Its name never changes: sealing a
segment is closing it, its last commit being already durable (renaming it would change the key
of the reader's cursor and have it read the segment twice).

Exactly once: every line carries its record ``id`` (first, so it is read from the line's start
without parsing the rest). :class:`LoopStore` keeps the ids committed within the retention
window (rebuilt from the segments at start-up, so a restarted collector still knows them). On
a local or PVC store several replicas, and the workers of one collector, serialize their
commits with an ``flock`` on ``collector/.lock``, whose generation counter tells a writer that
another one committed: it then reads the new lines of the other writers' segments before
filtering its batch, so an id is written once across writers too. After the counter the lock
file keeps a ring of the segments the last 64 commits wrote to (each slot tagged with its
generation), so a writer stats and reads only those; a slot overwritten or never written (a
writer of an earlier version) makes it list the whole store instead. Every write to a segment
and its marker happens under that lock, so a segment with lines beyond its marker seen while
holding it is not being written.
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
from kubetune.api.segments import MARKER_BYTES, decode_marker, encode_marker, marker_name
from kubetune.collector.batch import Batch
from kubetune.collector.ids import IdIndex

COLLECTOR_DIR = "collector"
# The lock file: the commit generation (8 bytes), then a ring of the segments the last
# _RING_SLOTS commits wrote to ({generation, relpath} per slot), so a writer reads only those.
_RING_SLOTS = 64
_SLOT_BYTES = 256
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

    quick = False  # whether an append takes about a disk flush (not a network round trip)

    def list_segments(self, since_day: str) -> list[SegmentInfo]:
        raise NotImplementedError

    def read(self, relpath: str, offset: int) -> bytes:
        raise NotImplementedError

    def write(self, relpath: str, committed: int, data: bytes) -> bool:
        """Make ``relpath`` its first ``committed`` bytes followed by ``data`` (durable after
        ``flush``, readable after ``publish``); whether it created the segment.

        ``committed`` is 0 for a segment this call creates; otherwise it is the length this
        writer committed last (the segment is open: only this writer appends to it).
        """
        raise NotImplementedError

    def flush(self, relpath: str, created: bool) -> None:
        """Make what ``write`` wrote durable (a blocking call that may run in any thread)."""

    def publish(self, relpath: str, size: int) -> None:
        """Let readers read ``relpath`` up to ``size`` (its committed-length marker)."""

    def close(self) -> None:
        """Seal the open segment: nothing more is appended to it."""

    def truncate(self, relpath: str, size: int) -> None:
        """Cut a torn tail (bytes after the last complete line) of an abandoned segment."""

    def mark_committed(self, relpath: str, size: int) -> bool:
        """Raise an abandoned segment's committed-length marker to ``size`` (its synced whole
        lines) where it says less; whether it was rewritten."""
        return False

    def committed(self, relpath: str) -> int | None:
        """The committed length a segment's marker gives; None without a marker."""
        return None

    def changed_segments(self) -> list[SegmentInfo] | None:
        """The segments other writers committed to between this writer's last commit and the
        lock it holds now, when the lock tells; None: list them all."""
        return None

    def note_commit(self, relpath: str) -> None:
        """Under the lock, before appending: tell other writers which segment changes."""

    def sync(self, relpath: str) -> None:
        """Make what ``relpath`` holds durable (lines a writer wrote but may not have synced)."""

    @contextlib.contextmanager
    def locked(self) -> Iterator[int]:
        """Hold the store's commit lock; yield how many commits other holders made since ours."""
        others = self.acquire()
        try:
            yield others
        finally:
            self.release()

    def acquire(self) -> int:
        """Take the store's commit lock (see ``locked``): how many commits others made."""
        return 0

    def release(self) -> None:
        """Give the commit lock back."""

    def cleanup(self) -> int:
        return 0


class LocalBackend(Backend):
    """file:// and pvc:// stores (a PVC is mounted at ``$KUBETUNE_PVC_ROOT/CLAIM``)."""

    quick = True

    def __init__(self, root: Path) -> None:
        self.root = root
        self.base = root / COLLECTOR_DIR
        self._generation = -1
        self._others: range = range(0)  # the generations of others' commits since our last
        self._fd = -1
        self._fd_relpath: str | None = None
        self._marker_fd = -1
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

    def write(self, relpath: str, committed: int, data: bytes) -> bool:
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
        except BaseException:
            self.close()  # abandoned: a torn tail is cut under the lock before the next write
            raise
        return created

    def flush(self, relpath: str, created: bool) -> None:
        try:
            _fdatasync(self._fd)
            if created:
                _fsync_dir((self.root / relpath).parent)  # the segment's name is durable too
        except BaseException:
            self.close()
            raise

    def publish(self, relpath: str, size: int) -> None:
        try:
            os.pwrite(self._marker_fd, encode_marker(size), 0)  # readers may now read it
        except BaseException:
            self.close()
            raise

    def _create(self, relpath: str) -> None:
        self.close()
        final = self.root / relpath
        folder = final.parent
        if not folder.is_dir():
            folder.mkdir(parents=True, exist_ok=True)
            _fsync_dir(folder.parent)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
        # the marker first: a reader never sees this segment without it (so reads nothing yet)
        self._marker_fd = os.open(folder / marker_name(final.name), flags, 0o644)
        os.pwrite(self._marker_fd, encode_marker(0), 0)
        self._fd = os.open(final, flags, 0o644)
        self._fd_relpath = relpath

    def close(self) -> None:
        for fd in (self._fd, self._marker_fd):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._fd, self._marker_fd, self._fd_relpath = -1, -1, None

    def mark_committed(self, relpath: str, size: int) -> bool:
        path = self.root / relpath
        try:
            fd = os.open(path.parent / marker_name(path.name), os.O_RDWR)
        except FileNotFoundError:
            return False  # a segment without a marker is read whole
        try:
            marked = decode_marker(os.pread(fd, MARKER_BYTES + 1, 0))
            if marked is not None and marked >= size:
                return False
            os.pwrite(fd, encode_marker(size), 0)
            return True
        finally:
            os.close(fd)

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
            _fdatasync(fd)
        finally:
            os.close(fd)

    def acquire(self) -> int:
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
            self._others = (
                range(self._generation + 1, current + 1) if self._generation >= 0 else range(0)
            )
            os.pwrite(fd, struct.pack("<Q", current + 1), 0)
            self._generation = current + 1
        except BaseException:
            fcntl.flock(fd, fcntl.LOCK_UN)
            raise
        return others

    def release(self) -> None:
        fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    def note_commit(self, relpath: str) -> None:
        """Record in the lock file's ring which segment this commit (generation) writes to."""
        slot = struct.pack("<Q", self._generation) + relpath.encode("utf-8")
        if len(slot) <= _SLOT_BYTES:
            offset = 8 + (self._generation % _RING_SLOTS) * _SLOT_BYTES
            os.pwrite(self._lock_fd, slot.ljust(_SLOT_BYTES, b"\0"), offset)

    def changed_segments(self) -> list[SegmentInfo] | None:
        others = self._others
        if not others or len(others) > _RING_SLOTS:
            return None
        ring = os.pread(self._lock_fd, _RING_SLOTS * _SLOT_BYTES, 8)
        relpaths = set()
        for generation in others:
            at = (generation % _RING_SLOTS) * _SLOT_BYTES
            slot = ring[at : at + _SLOT_BYTES]
            if len(slot) < _SLOT_BYTES or struct.unpack("<Q", slot[:8])[0] != generation:
                return None  # overwritten, or a writer that keeps no ring: list them all
            relpaths.add(slot[8:].rstrip(b"\0").decode("utf-8"))
        out = []
        for relpath in sorted(relpaths):
            with contextlib.suppress(FileNotFoundError):
                stat = os.stat(self.root / relpath)
                out.append(SegmentInfo(relpath, stat.st_size, stat.st_mtime))
        return out

    def committed(self, relpath: str) -> int | None:
        path = self.root / relpath
        try:
            with open(path.parent / marker_name(path.name), "rb") as marker:
                return decode_marker(marker.read(MARKER_BYTES + 1)) or 0
        except FileNotFoundError:
            return None

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
        import fsspec

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

    def write(self, relpath: str, committed: int, data: bytes) -> bool:
        """One PUT of the whole segment: durable when it returns (no flush, no marker)."""
        created = self._open != relpath or len(self._content) != committed
        if created:
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
        return created

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


# the collector writes every line with its id first: {"id":"<JSON string, ASCII>",...
_ID_FIRST = re.compile(rb'\{"id":"([^"\\\x00-\x1f\x7f-\xff]*)"[,}]')


def ids_of(data: bytes) -> list[str]:
    """The record ids of complete segment lines, in order (read from the line's start when it
    is the collector's shape, else by parsing the line)."""
    lines = data.splitlines()
    found = list(map(_ID_FIRST.match, lines))
    if all(found):  # every line in the collector's shape: the ids, decoded at once
        if not found:
            return []
        raw_ids = b"\n".join([match.group(1) for match in found if match is not None])
        return raw_ids.decode("ascii").split("\n")  # no newline, no escape in them
    ids: list[str] = []
    for raw, match in zip(lines, found, strict=True):
        if match is not None:
            ids.append(match.group(1).decode("ascii"))
            continue
        if not raw.strip():
            continue
        with contextlib.suppress(ValueError):
            record = json.loads(raw)
            if isinstance(record, dict) and isinstance(record.get("id"), str):
                ids.append(record["id"])
    return ids


@dataclass
class Pending:
    """A commit between its steps (:meth:`LoopStore.write`): for each record whether it is
    new, the new ids, and where their lines went (``relpath`` None: nothing to write)."""

    fresh: list[bool]
    ids: list[str]
    where: list[int] | None = None  # the ids' index shards (ids.slots), if known
    relpath: str | None = None
    size: int = 0  # the segment's length once these lines are committed
    created: bool = False


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
        self.ids = IdIndex()  # id -> commit time
        self._known: dict[str, int] = {}  # segment -> bytes whose ids are in the index
        self._open: str | None = None
        self._size = 0  # committed bytes of the open segment
        self._opened_at = 0.0
        self.commits = 0
        self.torn_tails = 0  # torn tails cut (a crashed or failed write before)
        self.epoch = 0  # how many refreshes learned ids from other writers
        self.markers_raised = 0  # segments whose synced lines a crashed writer had not marked
        self._dirty = False

    def _since_day(self) -> str:
        return (datetime.now(UTC) - timedelta(seconds=self.retention)).strftime("%Y-%m-%d")

    def load(self) -> int:
        """Repair torn tails and read the ids of every segment within retention (how many)."""
        self.backend.cleanup()
        with self.backend.locked():
            return self.refresh()

    def refresh(self, infos: list[SegmentInfo] | None = None) -> int:
        """Index the lines other writers (or an earlier process) committed since last time:
        those of ``infos`` (the segments that changed), else of every segment in retention.

        Call it holding the store lock: a segment with lines beyond its marker, or a torn
        tail, is then not being written (every write happens under the lock): its writer died
        or failed, so its lines are synced and marked, and the tail is cut.
        """
        added = 0
        if infos is None:
            infos = self.backend.list_segments(self._since_day())
        for info in infos:
            seen = self._known.get(info.relpath, 0)
            if info.size == seen:
                continue
            if info.size < seen:
                seen = 0  # rewritten: read it all again
            data = self.backend.read(info.relpath, seen)
            complete = data.rfind(b"\n") + 1
            if info.relpath != self._open:
                self._repair(info.relpath, seen + complete, torn=complete < len(data))
            added += self._index(ids_of(data[:complete]), info.mtime)
            self._known[info.relpath] = seen + complete
        self._trim()
        if added:
            self.epoch += 1  # after the ids are in: a reader of the new epoch sees them
        return added

    def _index(self, ids: list[str], mtime: float) -> int:
        """Add the ids not in the index yet (their time: ``mtime``); how many were added."""
        return self.ids.add(ids, mtime)

    def _repair(self, relpath: str, complete: int, torn: bool) -> None:
        """Another writer's segment: lines beyond its marker (its writer died or failed before
        raising it) are synced and marked, for their ids count as committed and the loop must
        read them; a torn tail is cut."""
        marked = self.backend.committed(relpath)
        if marked is None or marked < complete:
            self.backend.sync(relpath)  # a marked prefix was synced by its writer already
        if torn:
            self.backend.truncate(relpath, complete)
            self.torn_tails += 1
        if marked is not None and marked < complete:
            self.markers_raised += int(self.backend.mark_committed(relpath, complete))

    def _trim(self) -> None:
        self.ids.trim(time.time() - self.retention, self.max_ids)

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

    def commit(
        self,
        batch: Batch,
        claimed_at: int | None = None,
        where: list[int] | None = None,
    ) -> list[bool]:
        """Write the lines whose id is new, durably; returns for each one whether it was new.

        ``claimed_at``: the caller found none of the ids in :attr:`ids` when :attr:`epoch` was
        this, and holds them distinct and claimed (the server's in-flight records) since:
        unless a refresh learned other writers' ids meanwhile (the epoch moved), they are all
        new without looking them up again.

        The three steps ``write``, ``flush`` and ``settle`` in a row: a caller may run the
        flush (the disk's) in another thread and go on meanwhile.
        """
        pending = self.write(batch, claimed_at, where)
        try:
            self.flush(pending)
        except BaseException:
            self.abandon(pending)
            raise
        return self.settle(pending)

    def write(
        self,
        batch: Batch,
        claimed_at: int | None = None,
        where: list[int] | None = None,
    ) -> Pending:
        """A commit's first step: take the store lock (held until ``settle`` or ``abandon``)
        and write the new lines, not durable yet (nobody reads beyond the marker). ``where``:
        the ids' index shards (:func:`kubetune.collector.ids.slots`), when the caller has them."""
        others = self.backend.acquire()
        try:
            if others or self._dirty:
                self.refresh(None if self._dirty else self.backend.changed_segments())
                self._dirty = False
            ids = batch.ids
            if claimed_at == self.epoch or (
                self.ids.isdisjoint(ids, where) and len(set(ids)) == len(ids)
            ):
                pending = Pending([True] * len(ids), ids, where)
                return self._write(pending, batch.data)
            return self._write_new(batch)
        except BaseException:
            self.mark_dirty()
            self.backend.release()
            raise

    def flush(self, pending: Pending) -> None:
        """The second step: make the written lines durable (blocking; any thread)."""
        if pending.relpath is not None:
            self.backend.flush(pending.relpath, pending.created)

    def settle(self, pending: Pending) -> list[bool]:
        """The last step: raise the marker, index the ids, give the lock back; for each
        record of the batch, whether it was new."""
        try:
            if pending.relpath is not None:
                self.backend.publish(pending.relpath, pending.size)
                self._size = pending.size
                self._known[pending.relpath] = pending.size
                self.commits += 1
                self._remember(pending.ids, pending.where)
            return pending.fresh
        except BaseException:
            self.mark_dirty()
            raise
        finally:
            self.backend.release()

    def abandon(self, pending: Pending) -> None:
        """After a failed (or cancelled) flush: the segment is abandoned, the lock given back."""
        self.mark_dirty()
        self.backend.release()

    def _write_new(self, batch: Batch) -> Pending:
        """Write the lines of the batch whose id is neither indexed nor earlier in it."""
        fresh: list[bool] = []
        chosen: dict[str, bool] = {}
        payload = bytearray()
        for record_id, line in batch.records():
            new = record_id not in self.ids and record_id not in chosen
            fresh.append(new)
            if new:
                chosen[record_id] = True
                payload += line
        pending = Pending(fresh, list(chosen))
        return self._write(pending, bytes(payload)) if payload else pending

    def _remember(self, ids: list[str], where: list[int] | None) -> None:
        # a commit's: new (looked up under the lock), distinct
        self.ids.add_new(ids, time.time(), where)
        if len(self.ids) > self.max_ids:
            self._trim()

    def _write(self, pending: Pending, payload: bytes) -> Pending:
        now = time.time()
        if (
            self._open is None
            or self._size + len(payload) > self.segment_bytes
            or now - self._opened_at >= self.segment_seconds
        ):
            self.close()
            self._open = f"{COLLECTOR_DIR}/{_day(now)}/{_stamp(now)}-{self.writer}.jsonl"
            self._opened_at = now
        self.backend.note_commit(self._open)
        pending.created = self.backend.write(self._open, self._size, payload)
        pending.relpath, pending.size = self._open, self._size + len(payload)
        return pending

    @property
    def open_segment_bytes(self) -> int:
        return self._size
