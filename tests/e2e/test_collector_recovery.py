"""A collector killed in the middle of an append: the torn tail is never a record, and is cut.

The collector appends each group commit to its open segment in place. A crash during that
write can leave the segment ending in complete lines of the unacknowledged commit followed by
half a line. This test makes that state for real (the collector is SIGKILLed, then the end of
its segment is what a cut ``pwrite`` leaves), and checks through the public interfaces, the
HTTP API and the loop's collect step (``python -m kubetune_workloads feedback``):

- the reader never shows the half line, before or after the restart, nor, before the restart,
  the whole line that was written but never flushed (it reads up to the segment's
  committed-length marker: a power loss could still take that line back);
- the restarted collector cuts the torn tail before it appends anything, keeps the complete
  line (synced, it raises the marker over it; its id is known: the client's retry is
  acknowledged as a duplicate, never written twice) and writes the rest of the retried batch;
- a collect that resumes from the cursor of a collect made during the outage reads each new
  record exactly once and does not re-read the segment (no "rotated" file).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.helpers.collector import CollectorProcess, post, row, run_collect

PATH = "/v1/feedback/default/loop"


def collect(tmp_path: Path, name: str, since: Path | None) -> tuple[dict[str, Any], list[str]]:
    """The loop's collect step over the store; (its result, the prompts it collected)."""
    out = tmp_path / name
    source = f"file://{tmp_path / 'store' / 'default' / 'loop'}"
    result = run_collect(
        tmp_path, source, f"file://{out}", f"file://{since}" if since else None, name
    )
    lines = (out / "feedback.jsonl").read_text().splitlines()
    return result, [json.loads(x)["instruction"] for x in lines]


def test_a_torn_tail_is_never_a_record_and_is_cut_on_restart(tmp_path: Path) -> None:
    process = CollectorProcess(tmp_path)
    process.start()
    try:
        first = [f"a{i}" for i in range(10)]
        assert post(process, first) == (200, {"accepted": 10, "duplicates": 0})
        process.kill()
        (segment,) = (tmp_path / "store").rglob("*.jsonl")
        acknowledged = segment.read_bytes()
        # What a commit of [cut-0, cut-1] cut by the crash leaves: one whole line, half a line.
        whole = json.dumps(row("cut-0"), separators=(",", ":")) + "\n"
        with segment.open("ab") as handle:
            handle.write(whole.encode() + b'{"id":"cut-1","prompt":"question cut-1","resp')

        during, prompts = collect(tmp_path, "c1", since=None)
        assert prompts == [f"question {i}" for i in first]  # committed lines only
        assert during["metrics"]["malformed"] == 0

        process.start()
        retried = ["cut-0", "cut-1", "b0", "b1"]  # the client retries its unacknowledged batch
        assert post(process, retried) == (200, {"accepted": 3, "duplicates": 1})
        assert post(process, ["b2", "a3"]) == (200, {"accepted": 1, "duplicates": 1})
    finally:
        process.stop()

    data = segment.read_bytes()
    assert data == acknowledged + whole.encode()  # the tail was cut, the whole line kept
    segments = sorted((tmp_path / "store").rglob("*.jsonl"))
    assert len(segments) == 2  # the restarted collector appends to a segment of its own
    stored = [json.loads(x)["id"] for s in segments for x in s.read_bytes().splitlines()]
    assert sorted(stored) == sorted([*first, "cut-0", "cut-1", "b0", "b1", "b2"])

    resumed, prompts = collect(tmp_path, "c2", since=tmp_path / "c1" / "cursor.json")
    assert sorted(prompts) == [f"question {i}" for i in ["b0", "b1", "b2", "cut-0", "cut-1"]]
    assert resumed["details"]["rotatedFiles"] == 0  # the cut segment was not re-read
    _, everything = collect(tmp_path, "c3", since=None)
    assert len(everything) == len(set(everything)) == len(stored)
