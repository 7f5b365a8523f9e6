"""The feedback step through its entry point: count and collect beyond a cursor, the record
rules, bad input, the artifact dataprep reads, and s3:// against a moto server."""

from __future__ import annotations

import gzip
import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from kubetune.api.steps import (
    CURSOR_FILE,
    FEEDBACK_FILE,
    MANIFEST_FILE,
    RESULTS_FILE,
    DataprepStepSpec,
    FeedbackStepSpec,
    StepResult,
    parse_step_spec,
)
from kubetune_workloads.__main__ import main, run_step
from kubetune_workloads.datasetio import open_dataset
from kubetune_workloads.manifest import hash_tree, read_manifest

from tests.helpers.moto_s3 import moto_s3

PRODUCER = {"kind": "FeedbackLoop", "name": "support", "namespace": "default", "runId": "c1"}
Row = dict[str, Any] | str


def feedback_spec(
    source: str | Path,
    out: Path | None = None,
    mode: str = "collect",
    since: str | Path | None = None,
    schema: str = "instruction",
    **source_settings: Any,
) -> FeedbackStepSpec:
    return FeedbackStepSpec.model_validate(
        {
            "producer": PRODUCER,
            "outputUri": str(out) if out and "://" in str(out) else f"file://{out or '/unused'}",
            "mode": mode,
            "source": {
                "uri": str(source) if "://" in str(source) else f"file://{source}",
                **source_settings,
            },
            "sinceCursorUri": None if since is None else f"file://{since}",
            "recordSchema": schema,
        }
    )


def run_spec(tmp_path: Path, spec: FeedbackStepSpec) -> StepResult:
    """Through the pod entry point, which turns errors into a result."""
    spec_file = tmp_path / f"spec-{spec.mode}.json"
    text = spec.to_json()
    spec_file.write_text(text)
    return run_step("feedback", spec_file)


def line(row: Row) -> str:
    return (row if isinstance(row, str) else json.dumps(row)) + "\n"


def append(path: Path, rows: list[Row]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as handle:
        handle.writelines(line(r) for r in rows)
    return path


def pairs(n: int, start: int = 0, **extra: Any) -> list[Row]:
    return [
        {
            "prompt": f"How do I reset password {i}?",
            "response": f"Open settings, step {i}.",
            **extra,
        }
        for i in range(start, start + n)
    ]


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines()]


def collected(tmp_path: Path, rows: list[Row], **kwargs: Any) -> list[dict[str, Any]]:
    """Collect one file of ``rows`` and return the records written."""
    src = append(tmp_path / "src" / "f.jsonl", rows).parent
    result = run_spec(tmp_path, feedback_spec(src, tmp_path / "out", **kwargs))
    assert result.ok, result.message
    return read_jsonl(tmp_path / "out" / FEEDBACK_FILE)


def test_step_spec_round_trips_through_parse_step_spec(tmp_path: Path) -> None:
    spec = feedback_spec(
        tmp_path, tmp_path / "out", "count", tmp_path / "c.json", "chat", minRating=3
    )
    parsed = parse_step_spec(spec.to_json())
    assert isinstance(parsed, FeedbackStepSpec) and parsed == spec
    assert parse_step_spec(spec.model_dump(by_alias=True)) == spec


def test_count_writes_nothing_and_collect_writes_the_artifact(tmp_path: Path) -> None:
    src = tmp_path / "feedback"
    append(src / "2024" / "day1.jsonl", pairs(3))
    append(src / "day0.jsonl", pairs(2, start=10))
    (src / "notes.txt").write_text("not feedback\n")
    append(src / ".tmp-writer.jsonl", pairs(5, start=50))  # hidden: a writer's temporary file

    count = run_spec(tmp_path, feedback_spec(src, tmp_path / "never", "count"))
    assert count.ok and count.reason == "Counted"
    assert count.metrics == {"pendingRecords": 5, "newLines": 5, "malformed": 0, "lowRating": 0}
    assert count.message == "5 usable feedback records (5 new lines) in 2 files"
    assert count.output_uri is None and not (tmp_path / "never").exists()

    out = tmp_path / "out"
    result = run_spec(tmp_path, feedback_spec(src, out))
    assert result.ok and result.reason == "Collected"
    assert result.metrics["usedRecords"] == 5 and result.metrics["preferencePairs"] == 0
    assert result.output_uri == f"file://{out}"
    assert sorted(p.name for p in out.iterdir()) == [
        CURSOR_FILE,
        FEEDBACK_FILE,
        MANIFEST_FILE,
        RESULTS_FILE,
    ]
    records = read_jsonl(out / FEEDBACK_FILE)
    # sorted relative paths: "2024/day1.jsonl" before "day0.jsonl"
    assert [r["feedback_source"] for r in records] == [
        "2024/day1.jsonl:1",
        "2024/day1.jsonl:2",
        "2024/day1.jsonl:3",
        "day0.jsonl:1",
        "day0.jsonl:2",
    ]
    assert records[0] == {
        "instruction": "How do I reset password 0?",
        "input": "",
        "output": "Open settings, step 0.",
        "feedback_source": "2024/day1.jsonl:1",
    }
    cursor = json.loads((out / CURSOR_FILE).read_text())
    assert cursor == {
        "version": 1,
        "files": {
            "2024/day1.jsonl": {"lines": 3, "bytes": (src / "2024" / "day1.jsonl").stat().st_size},
            "day0.jsonl": {"lines": 2, "bytes": (src / "day0.jsonl").stat().st_size},
        },
    }
    manifest = read_manifest(out)
    assert manifest is not None and manifest.artifact == "feedback"
    assert manifest.content_hash == result.content_hash == hash_tree(out)[0]
    assert set(manifest.files) == {CURSOR_FILE, FEEDBACK_FILE, RESULTS_FILE}
    results = json.loads((out / RESULTS_FILE).read_text())
    assert results["metrics"]["usedRecords"] == 5 and results["files"]["day0.jsonl"]["usable"] == 2


def test_collect_again_overwrites_the_same_artifact(tmp_path: Path) -> None:
    src = append(tmp_path / "src" / "a.jsonl", pairs(4)).parent
    spec = feedback_spec(src, tmp_path / "out")
    first = run_spec(tmp_path, spec)
    second = run_spec(tmp_path, spec)
    assert first.ok and second.ok and first.content_hash == second.content_hash
    assert len(read_jsonl(tmp_path / "out" / FEEDBACK_FILE)) == 4
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_cursor_advances_to_only_the_new_records(tmp_path: Path) -> None:
    src = tmp_path / "src"
    append(src / "a.jsonl", pairs(3))
    append(src / "b.jsonl", pairs(2, start=100))
    first = run_spec(tmp_path, feedback_spec(src, tmp_path / "c1"))
    assert first.metrics["usedRecords"] == 5
    cursor1 = tmp_path / "c1" / CURSOR_FILE

    append(src / "a.jsonl", pairs(2, start=3))
    append(src / "new" / "c.jsonl", pairs(1, start=200))
    count = run_spec(tmp_path, feedback_spec(src, mode="count", since=cursor1))
    assert count.metrics["pendingRecords"] == 3 and count.metrics["newLines"] == 3
    assert count.message == "3 usable feedback records (3 new lines) in 2 files"

    second = run_spec(tmp_path, feedback_spec(src, tmp_path / "c2", since=cursor1))
    assert second.metrics["usedRecords"] == 3
    records = read_jsonl(tmp_path / "c2" / FEEDBACK_FILE)
    assert [r["feedback_source"] for r in records] == ["a.jsonl:4", "a.jsonl:5", "new/c.jsonl:1"]
    assert [r["instruction"] for r in records][:2] == [
        "How do I reset password 3?",
        "How do I reset password 4?",
    ]
    cursor2 = json.loads((tmp_path / "c2" / CURSOR_FILE).read_text())["files"]
    assert {k: v["lines"] for k, v in cursor2.items()} == {
        "a.jsonl": 5,
        "b.jsonl": 2,  # untouched since the first cycle, still carried
        "new/c.jsonl": 1,
    }

    nothing = run_spec(
        tmp_path, feedback_spec(src, mode="count", since=tmp_path / "c2" / CURSOR_FILE)
    )
    assert (
        nothing.ok and nothing.metrics["pendingRecords"] == 0 and nothing.metrics["newLines"] == 0
    )


def test_a_partial_last_line_waits_until_it_is_complete(tmp_path: Path) -> None:
    path = append(tmp_path / "src" / "a.jsonl", pairs(2))
    with path.open("a") as handle:
        handle.write('{"prompt": "Is sync on", "respo')
    first = run_spec(tmp_path, feedback_spec(path.parent, tmp_path / "c1"))
    assert first.metrics["usedRecords"] == 2 and first.metrics["malformed"] == 0
    cursor = json.loads((tmp_path / "c1" / CURSOR_FILE).read_text())["files"]["a.jsonl"]
    assert cursor["lines"] == 2 and cursor["bytes"] < path.stat().st_size

    with path.open("a") as handle:
        handle.write('nse": "Yes, by default."}\n')
    second = run_spec(
        tmp_path, feedback_spec(path.parent, tmp_path / "c2", since=tmp_path / "c1" / CURSOR_FILE)
    )
    assert second.metrics["usedRecords"] == 1 and second.metrics["malformed"] == 0
    assert read_jsonl(tmp_path / "c2" / FEEDBACK_FILE)[0]["output"] == "Yes, by default."


def test_a_rotated_file_is_read_from_the_start(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = append(tmp_path / "src" / "a.jsonl", pairs(5))
    assert run_spec(tmp_path, feedback_spec(path.parent, tmp_path / "c1")).ok
    path.write_text("".join(line(r) for r in pairs(2, start=500)))  # rotated: shorter now
    with caplog.at_level(logging.WARNING):
        result = run_spec(
            tmp_path,
            feedback_spec(path.parent, tmp_path / "c2", since=tmp_path / "c1" / CURSOR_FILE),
        )
    assert result.ok and result.metrics["usedRecords"] == 2
    assert result.details is not None and result.details["rotatedFiles"] == 1
    assert "rotated file read from the start" in result.message
    assert "a.jsonl is shorter than its cursor" in caplog.text
    assert [r["feedback_source"] for r in read_jsonl(tmp_path / "c2" / FEEDBACK_FILE)] == [
        "a.jsonl:1",
        "a.jsonl:2",
    ]
    assert json.loads((tmp_path / "c2" / CURSOR_FILE).read_text())["files"]["a.jsonl"] == {
        "lines": 2,
        "bytes": path.stat().st_size,
    }


def test_a_rewritten_file_whose_cursor_ends_mid_line_is_read_from_the_start(
    tmp_path: Path,
) -> None:
    path = append(tmp_path / "src" / "a.jsonl", pairs(3))
    assert run_spec(tmp_path, feedback_spec(path.parent, tmp_path / "c1")).ok
    seen = path.stat().st_size
    rewritten = "".join(line(r) for r in pairs(2, start=1000, note="x" * 40))
    assert len(rewritten) > seen and rewritten[seen - 1] != "\n"
    path.write_text(rewritten)
    result = run_spec(
        tmp_path, feedback_spec(path.parent, mode="count", since=tmp_path / "c1" / CURSOR_FILE)
    )
    assert result.details is not None and result.details["rotatedFiles"] == 1
    assert result.metrics["pendingRecords"] == 2


def test_gzip_files_resume_and_a_cut_short_archive_ends_at_its_last_line(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    path = src / "a.jsonl.gz"
    with gzip.open(path, "wt") as handle:
        handle.writelines(line(r) for r in pairs(3))
    first = run_spec(tmp_path, feedback_spec(src, tmp_path / "c1"))
    assert first.metrics["usedRecords"] == 3

    with gzip.open(path, "at") as handle:  # a second gzip member appended
        handle.writelines(line(r) for r in pairs(2, start=3))
    since = tmp_path / "c1" / CURSOR_FILE
    second = run_spec(tmp_path, feedback_spec(src, tmp_path / "c2", since=since))
    assert second.metrics["usedRecords"] == 2 and second.details["rotatedFiles"] == 0  # type: ignore[index]
    assert read_jsonl(tmp_path / "c2" / FEEDBACK_FILE)[0]["feedback_source"] == "a.jsonl.gz:4"

    member = gzip.compress("".join(line(r) for r in pairs(40, start=10)).encode())
    with path.open("ab") as handle:  # a member still being written: cut in the middle
        handle.write(member[: len(member) // 2])
    partial = run_spec(tmp_path, feedback_spec(src, mode="count", since=since))
    assert partial.ok and 2 <= partial.metrics["pendingRecords"] < 42
    assert partial.metrics["malformed"] == 0


def test_a_rewritten_gzip_file_is_read_again_and_a_corrupt_one_is_reported(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.jsonl.gz").write_bytes(gzip.compress("".join(line(r) for r in pairs(4)).encode()))
    assert run_spec(tmp_path, feedback_spec(src, tmp_path / "c1")).ok
    (src / "a.jsonl.gz").write_bytes(gzip.compress(line(pairs(1, start=9)[0]).encode()))
    good = "".join(line(r) for r in pairs(2, start=20)).encode()
    (src / "b.jsonl.gz").write_bytes(gzip.compress(good)[:30] + b"\x00garbage" * 20)
    with caplog.at_level(logging.WARNING):
        result = run_spec(
            tmp_path, feedback_spec(src, tmp_path / "c2", since=tmp_path / "c1" / CURSOR_FILE)
        )
    assert result.ok and result.details is not None
    assert result.details["rotatedFiles"] == 1 and result.details["corruptFiles"] == 1
    assert "1 corrupt file read up to the damage" in result.message
    assert "b.jsonl.gz is corrupt" in caplog.text
    records = read_jsonl(tmp_path / "c2" / FEEDBACK_FILE)
    assert records[0]["feedback_source"] == "a.jsonl.gz:1"
    assert records[0]["instruction"] == "How do I reset password 9?"


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        ({"prompt": "P", "response": "R", "rating": 2}, None),  # below minRating: dropped
        ({"prompt": "P", "response": "R", "rating": 2.99}, None),
        ({"prompt": "P", "response": "R", "rating": "1"}, None),  # a numeric string
        ({"prompt": "P", "response": "R", "rating": 3}, "R"),  # not below
        ({"prompt": "P", "response": "R", "rating": 5}, "R"),
        ({"prompt": "P", "response": "R"}, "R"),  # no rating
        ({"prompt": "P", "response": "R", "rating": None}, "R"),
        ({"prompt": "P", "response": "R", "rating": "great"}, "R"),  # not numeric
        ({"prompt": "P", "response": "R", "rating": True}, "R"),  # a bool is not a rating
        ({"prompt": "P", "response": "R", "rating": 1, "correction": "C"}, "C"),
        ({"prompt": "P", "response": "R", "correction": "C"}, "C"),
        ({"prompt": "P", "response": "R", "rating": 1, "correction": "  "}, None),
        ({"prompt": "P", "response": "R", "correction": "C", "chosen": "G"}, "G"),
        ({"prompt": "P", "chosen": "G", "rejected": "B", "rating": 1}, "G"),
        ({"prompt": "P", "response": "R", "chosen": ""}, "R"),  # empty chosen: not a pair
    ],
)
def test_conversion_rules(tmp_path: Path, row: dict[str, Any], expected: str | None) -> None:
    src = append(tmp_path / "src" / "f.jsonl", [row]).parent
    result = run_spec(tmp_path, feedback_spec(src, tmp_path / "out", minRating=3))
    assert result.ok and result.metrics["malformed"] == 0
    records = read_jsonl(tmp_path / "out" / FEEDBACK_FILE)
    if expected is None:
        assert records == [] and result.metrics["lowRating"] == 1
    else:
        assert [r["output"] for r in records] == [expected] and result.metrics["lowRating"] == 0
        assert records[0]["instruction"] == "P"


def test_without_min_rating_low_ratings_are_kept(tmp_path: Path) -> None:
    records = collected(tmp_path, [{"prompt": "P", "response": "R", "rating": 0}])
    assert [r["output"] for r in records] == ["R"]


def test_preference_pairs_are_counted(tmp_path: Path) -> None:
    rows: list[Row] = [
        {"prompt": "P1", "chosen": "good", "rejected": "bad"},
        {"prompt": "P2", "chosen": "good"},
        {"prompt": "P3", "response": "R", "rejected": "bad"},
    ]
    src = append(tmp_path / "src" / "f.jsonl", rows).parent
    result = run_spec(tmp_path, feedback_spec(src, tmp_path / "out"))
    assert result.metrics["preferencePairs"] == 2 and result.metrics["usedRecords"] == 3
    assert result.details is not None and result.details["rejectedResponses"] == 1
    outputs = [r["output"] for r in read_jsonl(tmp_path / "out" / FEEDBACK_FILE)]
    assert outputs == ["good", "good", "R"]


def test_custom_field_names_and_absent_fields(tmp_path: Path) -> None:
    fields = {
        "prompt": "question",
        "response": "answer",
        "rating": "stars",
        "correction": "",  # not used: a "correction" key is ignored
        "chosen": "",
        "rejected": "",
    }
    rows: list[Row] = [
        {"question": "Q1", "answer": "A1", "stars": 5},
        {"question": "Q2", "answer": "A2", "stars": 1},
        {"question": "Q3", "answer": "A3", "stars": 1, "correction": "ignored"},
        {"question": "Q4", "answer": "A4", "chosen": "ignored"},
        {"prompt": "P", "response": "R"},  # the default names mean nothing here
    ]
    src = append(tmp_path / "src" / "f.jsonl", rows).parent
    spec = feedback_spec(src, tmp_path / "out", minRating=3, fields=fields)
    # Empty names survive the step spec's JSON (which drops nulls) and the API server.
    result = run_spec(tmp_path, spec)
    assert result.metrics["lowRating"] == 2 and result.metrics["malformed"] == 1
    records = read_jsonl(tmp_path / "out" / FEEDBACK_FILE)
    assert [(r["instruction"], r["output"]) for r in records] == [("Q1", "A1"), ("Q4", "A4")]


@pytest.mark.parametrize(
    ("schema", "expected"),
    [
        ("instruction", {"instruction": "Sync?", "input": "", "output": "Turn it on."}),
        (
            "chat",
            {
                "messages": [
                    {"role": "user", "content": "Sync?"},
                    {"role": "assistant", "content": "Turn it on."},
                ]
            },
        ),
        ("text", {"text": "Sync?\n\nTurn it on."}),
    ],
)
def test_each_record_schema(tmp_path: Path, schema: str, expected: dict[str, Any]) -> None:
    records = collected(tmp_path, [{"prompt": "Sync?", "response": "Turn it on."}], schema=schema)
    assert records == [{**expected, "feedback_source": "f.jsonl:1"}]


def test_malformed_lines_are_counted_and_logged_with_their_place(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    rows: list[Row] = [
        *pairs(12),
        "not json at all",
        "[1, 2, 3]",
        '"a string"',
        {"response": "no prompt"},
        {"prompt": "", "response": "empty prompt"},
        {"prompt": "no response"},
        {"prompt": "P", "response": ["a", "list"]},
        {"prompt": "P", "response": "\ud800 lone surrogate"},
        "",  # a blank line: consumed, not a record
    ]
    src = append(tmp_path / "src" / "f.jsonl", rows).parent
    with (src / "f.jsonl").open("ab") as handle:
        handle.write(b'{"prompt": "\xff\xfe", "response": "bad bytes"}\n')
        handle.write(b'{"prompt": "' + b"x" * (9 << 20) + b'", "response": "too long"}\n')
    with caplog.at_level(logging.WARNING):
        result = run_spec(tmp_path, feedback_spec(src, tmp_path / "out"))
    assert result.ok, result.message
    assert result.metrics["usedRecords"] == 12 and result.metrics["malformed"] == 10
    assert result.metrics["newLines"] == 23
    assert "f.jsonl:13: invalid JSON" in caplog.text and "f.jsonl:14: a JSON list" in caplog.text
    assert "f.jsonl:18" not in caplog.text  # only the first few are logged
    results = json.loads((tmp_path / "out" / RESULTS_FILE).read_text())
    assert len(results["details"]["malformedExamples"]) == 5
    cursor = json.loads((tmp_path / "out" / CURSOR_FILE).read_text())["files"]["f.jsonl"]
    assert cursor == {"lines": 23, "bytes": (src / "f.jsonl").stat().st_size}


def test_mostly_malformed_feedback_fails_naming_files_and_an_example(tmp_path: Path) -> None:
    src = tmp_path / "src"
    append(src / "good.jsonl", pairs(4))
    append(src / "bad.jsonl", [{"question": "wrong field names", "answer": "x"}] * 6)
    result = run_spec(tmp_path, feedback_spec(src, tmp_path / "out"))
    assert not result.ok and result.reason == "InvalidInput"
    assert "6 of 10 feedback records beyond the cursor are malformed" in result.message
    assert "bad.jsonl (6)" in result.message and "good.jsonl (" not in result.message
    assert "bad.jsonl:1: missing or empty prompt field 'prompt'" in result.message
    assert not (tmp_path / "out").exists()
    assert [p for p in tmp_path.iterdir() if p.name.startswith(".out")] == []
    counted = run_spec(tmp_path, feedback_spec(src, mode="count"))
    assert not counted.ok and counted.reason == "InvalidInput"


def test_half_malformed_or_fewer_than_ten_records_is_not_a_failure(tmp_path: Path) -> None:
    src = tmp_path / "src"
    append(src / "a.jsonl", [*pairs(5), *["junk"] * 5])  # exactly 50%
    assert run_spec(tmp_path, feedback_spec(src, mode="count")).ok
    few = tmp_path / "few"
    append(few / "a.jsonl", [*pairs(1), *["junk"] * 8])  # 89% but only 9 records
    result = run_spec(tmp_path, feedback_spec(few, mode="count"))
    assert result.ok and result.metrics["malformed"] == 8


def test_a_missing_since_cursor_is_retryable_and_a_corrupt_one_is_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBETUNE_TERMINATION_LOG", str(tmp_path / "termination-log"))
    src = append(tmp_path / "src" / "a.jsonl", pairs(2)).parent

    def exit_code(since: Path) -> tuple[int, StepResult]:
        spec_file = tmp_path / "spec.json"
        spec_file.write_text(feedback_spec(src, tmp_path / "out", since=since).to_json())
        code = main(["feedback", "--spec", str(spec_file)])
        return code, StepResult.model_validate_json((tmp_path / "termination-log").read_text())

    code, missing = exit_code(tmp_path / "nowhere" / CURSOR_FILE)
    assert (code, missing.reason) == (1, "CursorUnreadable")
    assert "nowhere/cursor.json" in missing.message
    corrupt_cursors = {
        "not json": "not JSON",
        "[]": "expected an object",
        '{"version": 2, "files": {}}': "version must be 1",
        '{"version": 1, "files": []}': "'files' must be an object",
        '{"version": 1, "files": {"a.jsonl": {"lines": -1, "bytes": 0}}}': "non-negative",
        '{"version": 1, "files": {"a.jsonl": {"lines": 5, "bytes": 3}}}': "5 lines cannot",
        '{"version": 1, "files": {"../etc/passwd": {"lines": 1, "bytes": 9}}}': "relative path",
        '{"version": 1, "files": {"a.jsonl": {"lines": "2", "bytes": 9}}}': "lines must be",
    }
    for text, why in corrupt_cursors.items():
        (tmp_path / "bad.json").write_text(text)
        code, corrupt = exit_code(tmp_path / "bad.json")
        assert (code, corrupt.reason) == (2, "InvalidCursor"), text
        assert why in corrupt.message, (text, corrupt.message)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("prefix", ["empty", "absent"])
def test_an_empty_prefix_is_zero_records_not_a_failure(tmp_path: Path, prefix: str) -> None:
    (tmp_path / "empty").mkdir()
    count = run_spec(tmp_path, feedback_spec(tmp_path / prefix, mode="count"))
    assert count.ok and count.metrics["pendingRecords"] == 0
    assert count.message == "0 usable feedback records (0 new lines) in 0 files"
    result = run_spec(tmp_path, feedback_spec(tmp_path / prefix, tmp_path / "out"))
    assert result.ok and result.reason == "Collected" and result.metrics["usedRecords"] == 0
    assert (tmp_path / "out" / FEEDBACK_FILE).read_text() == ""
    assert json.loads((tmp_path / "out" / CURSOR_FILE).read_text()) == {"version": 1, "files": {}}
    assert read_manifest(tmp_path / "out") is not None


def test_pod_entry_point_in_a_subprocess(tmp_path: Path) -> None:
    src = append(tmp_path / "src" / "a.jsonl", [*pairs(3), "junk"]).parent
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(feedback_spec(src, tmp_path / "out").to_json())
    log = tmp_path / "termination-log"
    env = {**os.environ, "KUBETUNE_TERMINATION_LOG": str(log)}
    command = [sys.executable, "-m", "kubetune_workloads", "feedback", "--spec", str(spec_file)]
    proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    printed = [x for x in proc.stdout.splitlines() if x.startswith("KUBETUNE_RESULT ")]
    assert len(printed) == 1
    result = StepResult.model_validate_json(printed[0].removeprefix("KUBETUNE_RESULT "))
    assert result == StepResult.model_validate_json(log.read_text())
    assert result.ok and result.reason == "Collected" and result.metrics["usedRecords"] == 3
    assert "a.jsonl:4: invalid JSON" in proc.stderr

    (tmp_path / "bad.json").write_text("{")
    spec_file.write_text(feedback_spec(src, tmp_path / "o2", since=tmp_path / "bad.json").to_json())
    proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert '"reason":"InvalidCursor"' in proc.stdout


def test_dataprep_reads_the_collected_feedback(tmp_path: Path) -> None:
    topics = ["shared links", "storage quota", "sync conflicts", "billing", "two-factor login"]
    rows: list[dict[str, Any]] = [
        {
            "prompt": f"Ticket {i}: how do I fix {topics[i % 5]} on account {i * 7919 % 1000}?",
            "response": f"For {topics[i % 5]}, open Settings and follow step {i} of the guide.",
            "rating": 5,
        }
        for i in range(30)
    ]
    src = append(tmp_path / "src" / "f.jsonl", list(rows)).parent
    assert run_spec(tmp_path, feedback_spec(src, tmp_path / "fb")).ok
    step = DataprepStepSpec.model_validate(
        {
            "producer": {"kind": "Dataset", "name": "ds", "namespace": "default", "runId": "r1"},
            "outputUri": f"file://{tmp_path / 'ds'}",
            "spec": {
                "sources": [{"uri": f"file://{tmp_path / 'fb' / FEEDBACK_FILE}"}],
                "schema": "instruction",
                "split": {"validationFraction": 0.0},
            },
        }
    )
    spec_file = tmp_path / "dataprep.json"
    spec_file.write_text(step.to_json())
    result = run_step("dataprep", spec_file)
    assert result.ok, result.message
    assert result.details is not None and result.details["records"] == 30
    train = open_dataset(tmp_path / "ds").records("train")
    assert {r["output"] for r in train} == {r["response"] for r in rows}


def test_s3_source_cursor_and_output_against_moto(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with moto_s3(monkeypatch) as s3:
        s3.create_bucket(Bucket="feedback-bucket")
        first_rows = "".join(line(r) for r in pairs(3))
        s3.put_object(Bucket="feedback-bucket", Key="in/app/day1.jsonl", Body=first_rows)
        s3.put_object(Bucket="feedback-bucket", Key="in/readme.md", Body="not feedback")

        first = run_spec(
            tmp_path, feedback_spec("s3://feedback-bucket/in/", "s3://feedback-bucket/cycles/c1")
        )
        assert first.ok and first.metrics["usedRecords"] == 3, first.message
        keys = {
            o["Key"]
            for o in s3.list_objects_v2(Bucket="feedback-bucket", Prefix="cycles/c1/")["Contents"]
        }
        assert keys == {
            f"cycles/c1/{n}" for n in (CURSOR_FILE, FEEDBACK_FILE, RESULTS_FILE, MANIFEST_FILE)
        }

        more = first_rows + "".join(line(r) for r in pairs(2, start=3))
        s3.put_object(
            Bucket="feedback-bucket", Key="in/app/day1.jsonl", Body=more
        )  # the object grew
        spec = feedback_spec(
            "s3://feedback-bucket/in/", "s3://feedback-bucket/cycles/c2", mode="count"
        ).model_copy(update={"since_cursor_uri": f"s3://feedback-bucket/cycles/c1/{CURSOR_FILE}"})
        count = run_spec(tmp_path, spec)
        assert count.ok and count.metrics["pendingRecords"] == 2, count.message
        collect = run_spec(tmp_path, spec.model_copy(update={"mode": "collect"}))
        assert collect.ok and collect.metrics["usedRecords"] == 2
        body = s3.get_object(Bucket="feedback-bucket", Key=f"cycles/c2/{FEEDBACK_FILE}")[
            "Body"
        ].read()
        sources = [json.loads(x)["feedback_source"] for x in body.decode().splitlines()]
        assert sources == ["app/day1.jsonl:4", "app/day1.jsonl:5"]

        gone = spec.model_copy(
            update={"since_cursor_uri": "s3://feedback-bucket/cycles/none/cursor.json"}
        )
        missing = run_spec(tmp_path, gone)
        assert not missing.ok and missing.reason == "CursorUnreadable"
        empty = run_spec(tmp_path, feedback_spec("s3://feedback-bucket/nothing/", mode="count"))
        assert empty.ok and empty.metrics["pendingRecords"] == 0


def test_collector_segments_replaced_by_longer_versions_resume_at_the_cursor(
    tmp_path: Path,
) -> None:
    """The collector appends each commit in place to its open segment, which grows after a
    collect: the cursor of the previous collect still holds (no rotation, nothing read twice),
    and the temporary files an older collector left beside a segment are never read."""
    from kubetune.collector.batch import Batch
    from kubetune.collector.records import encode_line
    from kubetune.collector.store import LocalBackend, LoopStore

    root = tmp_path / "loop"
    store = LoopStore(LocalBackend(root), "writer-1")

    def commit(ids: range) -> None:
        rows = [{"id": f"r{i}", "prompt": f"q{i}", "response": f"a{i}"} for i in ids]
        store.commit(Batch.of((r["id"], encode_line(r)) for r in rows))

    commit(range(3))
    (segment,) = root.rglob("*.jsonl")
    (segment.parent / f".{segment.name}.tmp-dead").write_text('{"prompt": "half')  # a crash
    first = run_spec(tmp_path, feedback_spec(root, tmp_path / "c1"))
    assert first.metrics["usedRecords"] == 3, first.message
    commit(range(3, 5))
    commit(range(1, 4))  # already committed ids: nothing written
    assert list(root.rglob("*.jsonl")) == [segment]
    second = run_spec(
        tmp_path, feedback_spec(root, tmp_path / "c2", since=tmp_path / "c1" / CURSOR_FILE)
    )
    assert second.metrics["usedRecords"] == 2 and second.details["rotatedFiles"] == 0
    collected = (tmp_path / "c2" / FEEDBACK_FILE).read_text().splitlines()
    assert [json.loads(r)["instruction"] for r in collected] == ["q3", "q4"]
