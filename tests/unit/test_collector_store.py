"""The collector's store on a local disk: commits append in place, a torn write is cut.

The torn write is real: a child process commits with ``RLIMIT_FSIZE`` set just past the
segment's end, so the kernel writes part of the commit (a whole line and half of the next)
and then refuses the rest (``EFBIG``), as a full disk does.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from kubetune.api.feedback import FeedbackSource
from kubetune.api.segments import decode_marker, marker_name
from kubetune.collector.batch import Batch
from kubetune.collector.records import encode_line
from kubetune.collector.store import LocalBackend, LoopStore
from kubetune_workloads.feedback.cursor import Cursor
from kubetune_workloads.feedback.files import list_feedback_files
from kubetune_workloads.feedback.scan import FeedbackScan

from tests.helpers.collector import stored_ids

OPERATOR = Path(__file__).resolve().parents[2] / "operator"


def batch(prefix: str, count: int) -> Batch:
    rows = [
        {"id": f"{prefix}{i}", "prompt": f"q {prefix}{i}", "response": "a"} for i in range(count)
    ]
    return Batch.of((str(r["id"]), encode_line(r)) for r in rows)


def joined(*batches: Batch) -> Batch:
    return Batch.joined(list(batches))


def test_commits_append_to_the_open_segment_in_place(tmp_path: Path) -> None:
    store = LoopStore(LocalBackend(tmp_path), "w1", segment_bytes=4096)
    assert store.load() == 0
    assert store.commit(batch("a", 3)) == [True, True, True]
    (segment,) = tmp_path.rglob("*.jsonl")
    first, inode = segment.read_bytes(), segment.stat().st_ino
    assert store.commit(joined(batch("a", 2), batch("b", 2), batch("b", 1))) == [
        *[False, False],
        *[True, True],
        False,  # twice in one batch: written once
    ]
    assert segment.stat().st_ino == inode  # the same file, appended to (no rewrite, no rename)
    assert segment.read_bytes().startswith(first)
    assert stored_ids(tmp_path) == ["a0", "a1", "a2", "b0", "b1"]
    assert not list(tmp_path.rglob(".*.tmp-*"))

    store.commit(batch("c", 100))  # over segment_bytes: a new segment
    assert len(list(tmp_path.rglob("*.jsonl"))) == 2
    again = LoopStore(LocalBackend(tmp_path), "w2")
    assert again.load() == 105  # a restarted collector knows every id


CHILD = """
import os, resource, signal, sys
from pathlib import Path
from kubetune.api.feedback import FeedbackSource
from kubetune.collector.batch import Batch
from kubetune.api.segments import decode_marker, marker_name
from kubetune.collector.records import encode_line
from kubetune.collector.store import LocalBackend, LoopStore
from kubetune_workloads.feedback.cursor import Cursor
from kubetune_workloads.feedback.files import list_feedback_files
from kubetune_workloads.feedback.scan import FeedbackScan

def batch(prefix, count):
    rows = [{"id": f"{prefix}{i}", "prompt": "q", "response": "a"} for i in range(count)]
    return Batch.of((r["id"], encode_line(r)) for r in rows)

store = LoopStore(LocalBackend(Path(sys.argv[1])), "w1")
store.commit(batch("a", 400))  # past the lock file's size: only the segment's write is cut
(segment,) = Path(sys.argv[1]).rglob("*.jsonl")
line = batch("b", 1).size
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
resource.setrlimit(resource.RLIMIT_FSIZE, (segment.stat().st_size + line + 10, hard))
try:
    store.commit(batch("b", 5))
except OSError as exc:
    print("failed", exc.errno)
    store.mark_dirty()
resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
print("torn", segment.read_bytes().endswith(b"\\n") is False)
print("retry", store.commit(batch("b", 5)))
print("cut", store.torn_tails)
"""


def test_a_torn_write_is_cut_and_its_whole_lines_are_not_written_twice(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(OPERATOR)}
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    import errno

    assert done.stdout.splitlines() == [
        f"failed {errno.EFBIG}",
        "torn True",  # the refused commit left a whole line and a part of the next
        "retry [False, True, True, True, True]",  # b0 was written whole: a duplicate now
        "cut 1",
    ]
    segments = sorted(tmp_path.rglob("*.jsonl"))
    assert len(segments) == 2  # the torn segment was abandoned, the retry opened a new one
    assert all(s.read_bytes().endswith(b"\n") for s in segments)
    assert sorted(stored_ids(tmp_path)) == sorted(
        [f"a{i}" for i in range(400)] + [f"b{i}" for i in range(5)]
    )


def read_new(root: Path, since: Cursor) -> tuple[list[str], Cursor]:
    """What the loop's collect step reads beyond ``since``: (the prompts, the new cursor)."""
    source = FeedbackSource(uri=f"file://{root}")
    scan = FeedbackScan(source, list_feedback_files(source.uri), since)
    return [r.usable.prompt for r in scan.records()], scan.cursor


def test_readers_see_only_committed_lines_up_to_the_marker(tmp_path: Path) -> None:
    store = LoopStore(LocalBackend(tmp_path), "w1")
    store.load()
    store.commit(batch("a", 3))
    (segment,) = tmp_path.rglob("*.jsonl")
    marker = segment.parent / marker_name(segment.name)
    committed = segment.stat().st_size
    assert decode_marker(marker.read_bytes()) == committed
    # A writer that dies after writing two lines and half a third, before its flush and
    # marker: lines in the page cache that a power loss would take back.
    uncommitted = batch("b", 2).data + b'{"id":"b2","pro'
    with segment.open("ab") as handle:
        handle.write(uncommitted)

    prompts, cursor = read_new(tmp_path, Cursor())
    assert prompts == ["q a0", "q a1", "q a2"]  # up to the marker, not the written tail
    (position,) = cursor.files.values()
    assert (position.lines, position.bytes) == (3, committed)

    restarted = LoopStore(LocalBackend(tmp_path), "w2")
    assert restarted.load() == 5  # syncs the whole lines, indexes them, raises the marker
    assert (restarted.torn_tails, restarted.markers_raised) == (1, 1)
    assert decode_marker(marker.read_bytes()) == segment.stat().st_size
    assert restarted.commit(batch("b", 3)) == [False, False, True]  # b0, b1: committed once
    prompts, after = read_new(tmp_path, cursor)
    assert prompts == ["q b0", "q b1", "q b2"]  # each once, the committed ones not again

    marker.write_bytes(b"0000000000000000012")  # cut short (a power loss): unreadable
    prompts, kept = read_new(tmp_path, after)
    assert prompts == [] and kept.files == after.files  # skipped this time, its cursor kept
    listed = [f.relpath for f in list_feedback_files(f"file://{tmp_path}")]
    assert segment.relative_to(tmp_path).as_posix() not in listed and len(listed) == 1


class _OldBackend(LocalBackend):
    """A writer of an earlier collector: it keeps no ring of changed segments in the lock."""

    def note_commit(self, relpath: str) -> None:
        pass


def test_writers_on_one_store_see_each_others_ids_through_the_lock(tmp_path: Path) -> None:
    a = LoopStore(LocalBackend(tmp_path), "wa", segment_bytes=2048)
    b = LoopStore(LocalBackend(tmp_path), "wb", segment_bytes=2048)
    old = LoopStore(_OldBackend(tmp_path), "wo")
    for store in (a, b, old):
        store.load()
    assert a.commit(batch("x", 2)) == [True, True]
    assert b.commit(joined(batch("x", 3), batch("y", 1))) == [False, False, True, True]
    for n in range(70):  # more commits than the ring holds, over several segments
        a.commit(batch(f"a{n}-", 3))
    assert b.commit(joined(batch("a5-", 1), batch("a69-", 1), batch("z", 1))) == [
        False,
        False,
        True,
    ]
    assert old.commit(joined(batch("z", 1), batch("o", 1))) == [False, True]
    assert a.commit(joined(batch("o", 1), batch("y", 1), batch("q", 1))) == [False, False, True]
    stored = stored_ids(tmp_path)
    assert len(stored) == len(set(stored)) == 2 + 1 + 1 + 210 + 1 + 1 + 1


def test_a_claim_made_before_a_refresh_is_checked_again(tmp_path: Path) -> None:
    """The server claims ids when it finds them new; if a later refresh learned other writers'
    ids before the claimed batch is committed, the claim is not trusted (no second copy)."""
    a = LoopStore(LocalBackend(tmp_path), "wa")
    b = LoopStore(LocalBackend(tmp_path), "wb")
    a.load()
    b.load()
    claimed_at = b.epoch  # b finds x0 new and claims it
    assert a.commit(batch("x", 1)) == [True]  # meanwhile another writer commits x0
    assert b.commit(batch("y", 1), claimed_at=b.epoch) == [True]  # b's refresh learns x0
    assert b.epoch > claimed_at
    assert b.commit(batch("x", 1), claimed_at=claimed_at) == [False]
    assert b.commit(batch("z", 1), claimed_at=b.epoch) == [True]
    assert sorted(stored_ids(tmp_path)) == ["x0", "y0", "z0"]


def test_ids_beyond_the_bound_or_the_retention_are_forgotten_oldest_first(tmp_path: Path) -> None:
    """Exactly once holds within the index's bound (``max_ids``) and retention window: a
    record sent again after its id was forgotten is written again, a newer one is not."""
    store = LoopStore(LocalBackend(tmp_path / "s"), "w1", max_ids=25)
    store.load()
    for prefix in "abc":  # 30 ids: the oldest commit's 10 are forgotten after the third
        assert store.commit(batch(prefix, 10)) == [True] * 10
    assert len(store.ids) == 20 and "a0" not in store.ids and "b0" in store.ids
    assert store.commit(joined(batch("a", 1), batch("c", 1))) == [True, False]
    assert (
        stored_ids(tmp_path / "s").count("a0") == 2 and stored_ids(tmp_path / "s").count("c0") == 1
    )

    # a restart indexes the retained segments again, with the segment's time as commit time
    old = LoopStore(LocalBackend(tmp_path / "s"), "w2", retention_seconds=3600.0)
    assert old.load() == 30  # a0 twice in the segment: indexed once
    for segment in (tmp_path / "s").rglob("*.jsonl"):
        os.utime(segment, (1.0e9, 1.0e9))  # 2001: beyond the retention window
    forgetful = LoopStore(LocalBackend(tmp_path / "s"), "w3", retention_seconds=3600.0)
    forgetful.load()
    assert len(forgetful.ids) == 0 and forgetful.commit(batch("b", 1)) == [True]
