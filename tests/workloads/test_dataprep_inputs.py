"""Dataprep sources and bad inputs: each fails with a clear reason or is a counted skip."""

from __future__ import annotations

import gzip
import json
import threading
import tracemalloc
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from kubetune.api.steps import DataprepStepSpec, StepResult
from kubetune_workloads.__main__ import run_step
from kubetune_workloads.datasetio import open_dataset

from tests.helpers.moto_s3 import moto_s3

GOOD = [
    {"text": f"Customer {i} asked how to restore deleted files from the trash in Nimbus Drive."}
    for i in range(20)
]


def make_step(out: Path, sources: list[dict[str, Any]], **spec: Any) -> DataprepStepSpec:
    return DataprepStepSpec.model_validate(
        {
            "producer": {"kind": "Dataset", "name": "ds", "namespace": "default", "runId": "r1"},
            "outputUri": f"file://{out}",
            "spec": {"sources": sources, **spec},
        }
    )


def run_spec(tmp_path: Path, sources: list[dict[str, Any]], **spec: Any) -> StepResult:
    """Run through the pod entry point (what turns errors into a termination message)."""
    step = make_step(tmp_path / "out", sources, **spec)
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(step.to_json())
    return run_step("dataprep", spec_file)


def jsonl(rows: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(r) + "\n" for r in rows)


def test_empty_source_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "empty.jsonl").write_text("")
    result = run_spec(tmp_path, [{"uri": f"file://{tmp_path}/empty.jsonl"}])
    assert not result.ok and result.reason == "EmptyDataset"
    assert "empty.jsonl holds no records" in result.message
    assert not (tmp_path / "out").exists()


def test_missing_file_and_unmatched_glob(tmp_path: Path) -> None:
    result = run_spec(tmp_path, [{"uri": f"file://{tmp_path}/nope.jsonl"}])
    assert not result.ok and result.reason == "InvalidInput" and "does not exist" in result.message
    result = run_spec(tmp_path, [{"uri": f"file://{tmp_path}/*.parquet"}])
    assert (
        not result.ok and result.reason == "InvalidInput" and "matches no files" in result.message
    )


def test_unreadable_encoding_fails_above_error_ratio(tmp_path: Path) -> None:
    garbage = bytes(range(256)) * 40
    (tmp_path / "bin.jsonl").write_bytes(
        b"\n".join(garbage[i : i + 300] for i in range(0, 10000, 300))
    )
    result = run_spec(tmp_path, [{"uri": f"file://{tmp_path}/bin.jsonl"}])
    assert not result.ok and result.reason == "TooManyMalformedRecords"
    assert "unreadable_encoding" in result.message


def test_fifty_megabyte_line_is_a_counted_skip_in_bounded_memory(tmp_path: Path) -> None:
    path = tmp_path / "huge.jsonl"
    with path.open("w") as handle:
        handle.write(jsonl(GOOD[:10]))
        handle.write('{"text": "' + "a" * (50 << 20) + '"}\n')
        handle.write(jsonl(GOOD[10:]))
    (tmp_path / "warm.jsonl").write_text(jsonl(GOOD))
    assert run_spec(tmp_path, [{"uri": f"file://{tmp_path}/warm.jsonl"}]).ok  # load libraries
    tracemalloc.start()
    try:
        result = run_spec(tmp_path, [{"uri": f"file://{path}"}], maxErrorRatio=0.1)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.ok, result.message
    assert result.details["stageCounts"]["read.too_long"] == 1  # type: ignore[index]
    assert result.details["records"] == 20  # type: ignore[index]
    assert peak < 30 << 20  # never holds the 50 MB line


def test_compression_bomb_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "bomb.jsonl.gz"
    with gzip.open(path, "wb", compresslevel=9) as handle:
        handle.write(jsonl(GOOD).encode())
        chunk = b"\0" * (1 << 20)
        for _ in range(200):
            handle.write(chunk)
    assert path.stat().st_size < 1 << 20
    result = run_spec(tmp_path, [{"uri": f"file://{path}"}])
    assert not result.ok and result.reason == "InvalidInput"
    assert "compression bomb" in result.message


def test_schema_mismatch_names_the_missing_field(tmp_path: Path) -> None:
    (tmp_path / "t.jsonl").write_text(jsonl(GOOD))
    result = run_spec(tmp_path, [{"uri": f"file://{tmp_path}/t.jsonl"}], schema="instruction")
    assert not result.ok and result.reason == "TooManyMalformedRecords"
    assert "missing_field=20" in result.message and "'instruction'" in result.message


def test_malformed_below_ratio_are_counted_with_examples(tmp_path: Path) -> None:
    (tmp_path / "t.jsonl").write_text(jsonl(GOOD) + "{not json\n")
    result = run_spec(tmp_path, [{"uri": f"file://{tmp_path}/t.jsonl"}], maxErrorRatio=0.1)
    assert result.ok
    stats = json.loads((tmp_path / "out" / "stats.json").read_text())
    assert stats["malformed"]["count"] == 1
    assert "t.jsonl:21" in stats["malformed"]["examples"]["invalid_json"][0]


def test_csv_parquet_json_and_gzip_sources_mixed(tmp_path: Path) -> None:
    import pandas as pd

    rows = [{"body": r["text"].replace("Customer", f"Client {k}")} for k, r in enumerate(GOOD)]
    pd.DataFrame(rows[:5]).to_csv(tmp_path / "a.csv", index=False)
    pd.DataFrame(rows[5:10]).to_parquet(tmp_path / "b.parquet")
    (tmp_path / "c.json").write_text(json.dumps({"data": rows[10:15]}))
    with gzip.open(tmp_path / "d.jsonl.gz", "wt") as handle:
        handle.write(jsonl(rows[15:]))
    fields = {"text": "body"}
    sources = [
        {"uri": f"file://{tmp_path}/a.csv", "format": "csv", "fields": fields},
        {"uri": f"file://{tmp_path}/b.parquet", "format": "parquet", "fields": fields},
        {"uri": f"file://{tmp_path}/c.json", "format": "json", "fields": fields},
        {"uri": f"file://{tmp_path}/*.jsonl.gz", "fields": fields},
    ]
    result = run_spec(tmp_path, sources, cleaning={"nearDedup": {"enabled": False}})
    assert result.ok, result.message
    assert result.details["records"] == 20  # type: ignore[index]


def test_bz2_and_xz_sources_are_decompressed(tmp_path: Path) -> None:
    import bz2
    import lzma

    rows = [{"text": r["text"].replace("Customer", f"Client {k}")} for k, r in enumerate(GOOD)]
    (tmp_path / "a.jsonl.bz2").write_bytes(bz2.compress(jsonl(rows[:10]).encode()))
    (tmp_path / "b.jsonl.xz").write_bytes(lzma.compress(jsonl(rows[10:]).encode()))
    sources = [{"uri": f"file://{tmp_path}/a.jsonl.bz2"}, {"uri": f"file://{tmp_path}/b.jsonl.xz"}]
    result = run_spec(tmp_path, sources, cleaning={"nearDedup": {"enabled": False}})
    assert result.ok, result.message
    assert result.details["records"] == 20  # type: ignore[index]


@pytest.fixture
def http_dir(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    root = tmp_path / "www"
    root.mkdir()
    handler = partial(SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a, **k: None  # type: ignore[attr-defined]
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", root
    finally:
        server.shutdown()
        server.server_close()


def test_http_source(tmp_path: Path, http_dir: tuple[str, Path]) -> None:
    base, root = http_dir
    (root / "data.jsonl").write_text(jsonl(GOOD))
    result = run_spec(tmp_path, [{"uri": f"{base}/data.jsonl?token=hunter2"}])
    assert result.ok, result.message
    assert result.details["records"] == 20  # type: ignore[index]
    assert "hunter2" not in (tmp_path / "out" / "stats.json").read_text()
    missing = run_spec(tmp_path, [{"uri": f"{base}/missing.jsonl?token=hunter2"}])
    assert not missing.ok and missing.reason == "StorageError"
    assert "hunter2" not in missing.message


def test_s3_source_against_moto(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with moto_s3(monkeypatch) as s3:
        s3.create_bucket(Bucket="corpus")
        s3.put_object(Bucket="corpus", Key="tickets/part-0.jsonl", Body=jsonl(GOOD[:12]))
        s3.put_object(Bucket="corpus", Key="tickets/part-1.jsonl", Body=jsonl(GOOD[12:]))
        result = run_spec(tmp_path, [{"uri": "s3://corpus/tickets/"}])
        assert result.ok, result.message
        assert result.details["records"] == 20  # type: ignore[index]
        dataset = open_dataset(tmp_path / "out")
        assert len(dataset.records("train")) + len(dataset.records("validation")) == 20
        missing = run_spec(tmp_path, [{"uri": "s3://corpus/absent/"}])
        assert not missing.ok and missing.reason == "InvalidInput"
