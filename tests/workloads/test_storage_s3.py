"""s3:// artifacts through kubetune_workloads.storage against moto's S3 server on 127.0.0.1:
an output directory is uploaded on success and nothing on failure, and fetch brings back a
prefix, a single object, or a clear error for a missing one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from kubetune.api.contract import CACHE_ENV
from kubetune.api.steps import MANIFEST_FILE
from kubetune_workloads import storage
from kubetune_workloads.errors import WorkloadError

from tests.helpers.moto_s3 import moto_s3

# a bucket of this module's own: the moto server is shared with other tests, which write too
BUCKET = "storage-roundtrip"


def _keys(s3: Any, bucket: str) -> list[str]:
    listed = s3.list_objects_v2(Bucket=bucket)
    return sorted(item["Key"] for item in listed.get("Contents", []))


def test_an_output_round_trips_through_s3_and_a_failed_one_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    with moto_s3(monkeypatch) as s3:
        s3.create_bucket(Bucket=BUCKET)
        with storage.output_dir(f"s3://{BUCKET}/ml/small/g1") as out:
            (out / "weights").mkdir()
            (out / "weights" / "model.bin").write_bytes(b"\x00\x01" * 100)
            (out / MANIFEST_FILE).write_text('{"artifact": "model"}')
        assert _keys(s3, BUCKET) == [
            f"ml/small/g1/{MANIFEST_FILE}",
            "ml/small/g1/weights/model.bin",
        ]

        failing = storage.output_dir(f"s3://{BUCKET}/ml/small/g2")
        with pytest.raises(RuntimeError, match="training diverged"), failing as out:
            (out / "partial.bin").write_bytes(b"x")
            raise RuntimeError("training diverged")
        assert not [k for k in _keys(s3, BUCKET) if k.startswith("ml/small/g2")]

        fetched = storage.fetch(f"s3://{BUCKET}/ml/small/g1")
        assert (fetched / "weights" / "model.bin").read_bytes() == b"\x00\x01" * 100
        assert storage.fetch(f"s3://{BUCKET}/ml/small/g1") == fetched  # cached, not fetched again
        single = storage.fetch(f"s3://{BUCKET}/ml/small/g1/{MANIFEST_FILE}")
        assert single.read_text() == '{"artifact": "model"}'


def test_fetching_a_missing_s3_object_is_invalid_input(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    with moto_s3(monkeypatch) as s3:
        s3.create_bucket(Bucket="models")
        with pytest.raises(WorkloadError, match=r"s3://models/nothing/here does not exist") as info:
            storage.fetch("s3://models/nothing/here")
        assert info.value.reason == "InvalidInput"
        assert not list((tmp_path / "cache").rglob("*here*"))  # no partial copy left behind
