"""The collector's store on a local disk: commits append in place, a torn write is cut.

The torn write is real: a child process commits with ``RLIMIT_FSIZE`` set just past the
segment's end, so the kernel writes part of the commit (a whole line and half of the next)
and then refuses the rest (``EFBIG``), as a full disk does.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from kubetune.collector.records import encode_line
from kubetune.collector.store import LocalBackend, LoopStore

OPERATOR = Path(__file__).resolve().parents[2] / "operator"


def batch(prefix: str, count: int) -> list[tuple[str, bytes]]:
    rows = [
        {"id": f"{prefix}{i}", "prompt": f"q {prefix}{i}", "response": "a"} for i in range(count)
    ]
    return [(str(r["id"]), encode_line(r)) for r in rows]


def ids_in(root: Path) -> list[str]:
    return [
        json.loads(line)["id"]
        for segment in sorted(root.rglob("*.jsonl"))
        for line in segment.read_bytes().splitlines()
    ]


def test_commits_append_to_the_open_segment_in_place(tmp_path: Path) -> None:
    store = LoopStore(LocalBackend(tmp_path), "w1", segment_bytes=4096)
    assert store.load() == 0
    assert store.commit(batch("a", 3)) == [True, True, True]
    (segment,) = tmp_path.rglob("*.jsonl")
    first, inode = segment.read_bytes(), segment.stat().st_ino
    assert store.commit([*batch("a", 2), *batch("b", 2), *batch("b", 1)]) == [
        *[False, False],
        *[True, True],
        False,  # twice in one batch: written once
    ]
    assert segment.stat().st_ino == inode  # the same file, appended to (no rewrite, no rename)
    assert segment.read_bytes().startswith(first)
    assert ids_in(tmp_path) == ["a0", "a1", "a2", "b0", "b1"]
    assert not list(tmp_path.rglob(".*.tmp-*"))

    store.commit(batch("c", 100))  # over segment_bytes: a new segment
    assert len(list(tmp_path.rglob("*.jsonl"))) == 2
    again = LoopStore(LocalBackend(tmp_path), "w2")
    assert again.load() == 105  # a restarted collector knows every id


CHILD = """
import os, resource, signal, sys
from pathlib import Path
from kubetune.collector.records import encode_line
from kubetune.collector.store import LocalBackend, LoopStore

def batch(prefix, count):
    rows = [{"id": f"{prefix}{i}", "prompt": "q", "response": "a"} for i in range(count)]
    return [(r["id"], encode_line(r)) for r in rows]

store = LoopStore(LocalBackend(Path(sys.argv[1])), "w1")
store.commit(batch("a", 5))
(segment,) = Path(sys.argv[1]).rglob("*.jsonl")
line = len(batch("b", 1)[0][1])
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
    assert sorted(ids_in(tmp_path)) == sorted(
        [f"a{i}" for i in range(5)] + [f"b{i}" for i in range(5)]
    )
