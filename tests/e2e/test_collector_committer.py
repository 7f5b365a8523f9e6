"""The committer process's socket protocol, spoken by a test as a worker would: requests sent
in one write (one group commit) each get their own answer, by sequence number; a request that
repeats ids another one is committing waits for that commit and counts them as duplicates, as
it does ids committed before; a failed commit answers 503 to each of its requests.
"""

from __future__ import annotations

import os
import signal
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

from kubetune.collector.batch import Batch
from kubetune.collector.committer import encode_request
from kubetune.collector.records import encode_line

COMMITTER = """
import os, socket, sys
from kubetune.collector.committer import serve_committer
from kubetune.collector.config import CollectorConfig
from kubetune.collector.workers import run_loop
path, store = sys.argv[1], sys.argv[2]
sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
sock.bind(path)
sock.listen(8)
alive, _keep = os.pipe()  # never written, never closed: the "supervisor" stays
run_loop(serve_committer(CollectorConfig(store=store, segment_bytes=1024), sock, alive))
"""
REPLY = struct.Struct("<IIHBII")


def records(prefix: str, count: int) -> Batch:
    rows = [
        {"id": f"{prefix}{i}", "prompt": f"q {prefix}{i}", "response": "a"} for i in range(count)
    ]
    return Batch.of((str(row["id"]), encode_line(row)) for row in rows)


def replies(conn: socket.socket, count: int) -> dict[int, tuple[int, int, int, str]]:
    """``count`` replies: sequence number -> (status, accepted, duplicates, text)."""
    data = b""
    out: dict[int, tuple[int, int, int, str]] = {}
    conn.settimeout(10)
    while len(out) < count:
        while len(data) < REPLY.size or len(data) < REPLY.size + REPLY.unpack_from(data)[0]:
            chunk = conn.recv(65536)
            assert chunk, "the committer closed the connection"
            data += chunk
        size, seq, status, _retry, accepted, duplicates = REPLY.unpack_from(data)
        out[seq] = (status, accepted, duplicates, data[REPLY.size : REPLY.size + size].decode())
        data = data[REPLY.size + size :]
    return out


def test_requests_sent_together_are_each_answered_for_their_own_records(
    tmp_path: Path,
) -> None:
    path, store = str(tmp_path / "commit.sock"), tmp_path / "store"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen([sys.executable, "-c", COMMITTER, path, f"file://{store}"], env=env)
    try:
        deadline = time.monotonic() + 30
        while not os.path.exists(path):
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.05)
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        conn.connect(path)
        conn.sendall(encode_request(1, "default", "l", records("a", 2)))  # opens the loop
        assert replies(conn, 1) == {1: (200, 2, 0, "")}

        # one write: three requests of new records, each answered for its own
        together = [records("b", 3), records("c", 2), records("d", 1)]
        conn.sendall(
            b"".join(encode_request(2 + i, "default", "l", r) for i, r in enumerate(together))
        )
        assert replies(conn, 3) == {2: (200, 3, 0, ""), 3: (200, 2, 0, ""), 4: (200, 1, 0, "")}

        # ids twice among requests sent together, or committed before: the later request
        # waits for the first's commit
        again = [records("e", 2), records("e", 2), Batch.joined([records("f", 1), records("a", 1)])]
        conn.sendall(
            b"".join(encode_request(5 + i, "default", "l", r) for i, r in enumerate(again))
        )
        assert replies(conn, 3) == {5: (200, 2, 0, ""), 6: (200, 0, 2, ""), 7: (200, 1, 1, "")}

        # a frame whose lines are not one per id (a worker's bug): a 500, nothing written
        one = records("h", 1)
        torn = [Batch([*one.ids, "h9"], one.data), Batch(one.ids, one.data[:-1])]
        conn.sendall(
            b"".join(encode_request(20 + i, "default", "l", b) for i, b in enumerate(torn))
        )
        assert {seq: reply[0] for seq, reply in replies(conn, 2).items()} == {20: 500, 21: 500}
        assert b'"id":"h0"' not in b"".join(p.read_bytes() for p in store.rglob("*.jsonl"))

        # a commit that fails (the segment's folder replaced by a file: a new segment cannot
        # be created) answers 503 to each of its requests: nothing is acknowledged
        day = next(store.rglob("*.jsonl")).parent
        big = [records(f"g{i}-", 40) for i in range(2)]
        os.rename(day, day.with_name(day.name + ".moved"))
        day.write_text("not a folder")
        conn.sendall(b"".join(encode_request(8 + i, "default", "l", r) for i, r in enumerate(big)))
        failed = replies(conn, 2)
        assert {seq: status for seq, (status, *_rest) in failed.items()} == {8: 503, 9: 503}
        assert all(text.startswith("store_error\0") for *_rest, text in failed.values())
        conn.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
