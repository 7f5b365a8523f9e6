"""Dataprep across tasks (datatrove), group-aware splits, honest versions, light imports."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from kubetune.api.steps import DataprepStepSpec
from kubetune_workloads.dataprep import run
from kubetune_workloads.dataprep.engine import TASKS_ENV
from kubetune_workloads.errors import WorkloadError
from kubetune_workloads.manifest import read_manifest

REPO = Path(__file__).resolve().parents[2]
TICKETS = REPO / "examples" / "quickstart" / "data" / "support_tickets.jsonl"
EVAL_PROMPTS = REPO / "examples" / "quickstart" / "data" / "eval_prompts.jsonl"
ARTIFACT_FILES = ("train.jsonl", "validation.jsonl", "stats.json", "README.md", "dataset.json")


def make_step(out: Path, sources: list[dict[str, Any]], **spec: Any) -> DataprepStepSpec:
    return DataprepStepSpec.model_validate(
        {
            "producer": {"kind": "Dataset", "name": "ds", "namespace": "default", "runId": "r1"},
            "outputUri": f"file://{out}",
            "spec": {"sources": sources, **spec},
        }
    )


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def tickets_step(out: Path) -> DataprepStepSpec:
    return make_step(
        out,
        [{"uri": f"file://{TICKETS}"}],
        schema="instruction",
        curation={"includeKeywords": ["nimbus", "sync", "refund", "password", "account", "app"]},
        cleaning={"nearDedup": {"ngram": 3}, "decontaminate": [f"file://{EVAL_PROMPTS}"]},
        safety={"balance": {"field": "customer_gender"}},
    )


def test_same_output_and_version_with_1_2_and_4_tasks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    results = {}
    for tasks in (1, 2, 4):
        monkeypatch.setenv(TASKS_ENV, str(tasks))
        results[tasks] = run(tickets_step(tmp_path / f"t{tasks}"))
        assert results[tasks].ok
    assert len({r.details["version"] for r in results.values()}) == 1  # type: ignore[index]
    assert len({r.content_hash for r in results.values()}) == 1
    for name in ARTIFACT_FILES:
        contents = {(tmp_path / f"t{t}" / name).read_bytes() for t in results}
        assert len(contents) == 1, name
    stats = json.loads((tmp_path / "t4" / "stats.json").read_text())
    assert stats["records"]["read"] == 1990  # every record counted once across the tasks
    assert stats["dropped"]["near_dedup.near_duplicate"] > 0


def test_a_killed_task_reruns_alone(tmp_path: Path) -> None:
    from kubetune_workloads.dataprep import engine

    data = write_jsonl(tmp_path / "in.jsonl", [{"text": f"record {i} " * 8} for i in range(3000)])
    spec = make_step(tmp_path / "out", [{"uri": f"file://{data}"}]).spec
    folder = tmp_path / "map"
    engine.run_map(spec, folder, 3, workers=1)
    results = engine.read_results(folder, 3)
    # Task 1 "dies": its result and completion marker are gone; task 0's shard is kept.
    (folder / "result-00001.pkl").unlink()
    (folder / "logs" / "completions" / "00001").unlink()
    kept = (folder / "shard-00000.pkl").stat().st_mtime_ns
    engine.run_map(spec, folder, 3, workers=1)
    assert (folder / "shard-00000.pkl").stat().st_mtime_ns == kept
    again = engine.read_results(folder, 3)
    assert [r.read for r in again] == [r.read for r in results]
    assert sum(r.read for r in again) == 3000


def test_a_task_error_keeps_its_reason(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import gzip

    # A compression bomb is refused inside a map task; the step fails with InvalidInput.
    bomb = tmp_path / "bomb.jsonl.gz"
    line = json.dumps({"text": "a" * 1000}) + "\n"
    with gzip.open(bomb, "wt") as handle:
        handle.write(line * 40_000)
    monkeypatch.setenv(TASKS_ENV, "2")
    with pytest.raises(WorkloadError) as caught:
        run(make_step(tmp_path / "out", [{"uri": f"file://{bomb}"}]))
    assert caught.value.reason == "InvalidInput"


def test_split_keeps_exact_duplicate_groups_together(tmp_path: Path) -> None:
    rows = []
    for i in range(150):
        text = f"Ticket {i}: the sync client stops at {i * 37 % 1000} files on my laptop today."
        rows += [{"text": text}, {"text": text.upper()}, {"text": text.replace(":", " -")}]
    data = write_jsonl(tmp_path / "in.jsonl", rows)
    out = tmp_path / "out"
    result = run(
        make_step(
            out,
            [{"uri": f"file://{data}"}],
            cleaning={"exactDedup": False, "nearDedup": {"enabled": False}},
            split={"validationFraction": 0.3},
        )
    )
    assert result.ok and result.details["records"] == 450  # type: ignore[index]

    def keys(split: str) -> set[str]:
        lines = (out / f"{split}.jsonl").read_text().splitlines()
        return {json.loads(line)["text"].split(":")[0].split(" -")[0].lower() for line in lines}

    train, validation = keys("train"), keys("validation")
    assert validation and train
    assert not train & validation


def test_near_duplicate_variants_collapse_before_the_split(tmp_path: Path) -> None:
    # The chain: variants of one ticket differing in the ticket number and a closing
    # phrase. Every variant within 0.8 of an earlier one (directly or through a dropped one)
    # is removed, so no variant pair straddles train and validation.
    base = (
        "my printer crashes what should i do ticket {n} from dana hi dana thanks for reaching "
        "out check the cable and retry if the printer still crashes reply to this ticket{tail}"
    )
    rows = [
        {"text": base.format(n=10000 + 7 * i, tail=" thanks again" if i % 2 else "")}
        for i in range(40)
    ]
    data = write_jsonl(tmp_path / "in.jsonl", rows)
    result = run(
        make_step(
            tmp_path / "out",
            [{"uri": f"file://{data}"}],
            cleaning={"nearDedup": {"ngram": 3}},
            split={"validationFraction": 0.5},
        )
    )
    assert result.ok
    assert result.details["records"] <= 2  # type: ignore[index]


def test_version_changes_when_a_dropped_record_changes(tmp_path: Path) -> None:
    rows = [
        {"text": f"Ticket {i}: my Nimbus sync client fails with code {i} today."} for i in range(50)
    ]
    rows.append({"text": "x"})  # dropped: too short
    data = write_jsonl(tmp_path / "in.jsonl", rows)
    sources = [{"uri": f"file://{data}"}]
    spec = {"cleaning": {"minChars": 5}}
    first = run(make_step(tmp_path / "a", sources, **spec))
    rows[-1] = {"text": "y"}
    write_jsonl(data, rows)
    second = run(make_step(tmp_path / "b", sources, **spec))
    assert (tmp_path / "a" / "train.jsonl").read_bytes() == (
        tmp_path / "b" / "train.jsonl"
    ).read_bytes()
    assert first.details["version"] != second.details["version"]  # type: ignore[index]
    manifest = read_manifest(tmp_path / "b")
    assert manifest is not None
    checksums = {i.uri: i.content_hash for i in manifest.inputs}
    assert any(h and h.startswith("sha256:") for h in checksums.values())
    assert "codeVersion" in manifest.extra


def test_stemming_does_not_import_scipy() -> None:
    code = (
        "import sys; sys.path.insert(0, 'images');"
        "from kubetune_workloads.dataprep.curation import make_normalizer;"
        "stem = make_normalizer('stem'); assert stem('refunds') == stem('refunding') == 'refund';"
        "print('scipy' in sys.modules, 'nltk' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == ["False", "False"]


def test_staged_run_one_pod_per_map_task_then_reduce(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What an Indexed Job of map pods then a reduce pod does, over a shared shard folder.
    monkeypatch.setenv(TASKS_ENV, "1")
    whole = run(tickets_step(tmp_path / "whole"))
    shards = tmp_path / "shards"
    monkeypatch.setenv(TASKS_ENV, "3")
    monkeypatch.setenv("KUBETUNE_DATAPREP_SHARDS", str(shards))
    monkeypatch.setenv("KUBETUNE_DATAPREP_STAGE", "map")
    for rank in (2, 0, 1):
        monkeypatch.setenv("JOB_COMPLETION_INDEX", str(rank))
        mapped = run(tickets_step(tmp_path / "unused"))
        assert mapped.ok and mapped.details == {"stage": "map", "rank": rank, "tasks": 3}
    assert not (tmp_path / "unused").exists()
    assert sorted(p.name for p in (shards / "logs" / "completions").iterdir()) == [
        "00000",
        "00001",
        "00002",
    ]
    monkeypatch.setenv("KUBETUNE_DATAPREP_STAGE", "reduce")
    reduced = run(tickets_step(tmp_path / "staged"))
    assert reduced.details["version"] == whole.details["version"]  # type: ignore[index]
    assert reduced.content_hash == whole.content_hash
    for name in ARTIFACT_FILES:
        assert (tmp_path / "staged" / name).read_bytes() == (tmp_path / "whole" / name).read_bytes()


def test_a_rerun_map_pod_skips_its_completed_task(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The pod of index 1 is started again (its node died after it finished): its completion
    # marker is there, so it does not redo the task nor touch its shard.
    shards = tmp_path / "shards"
    for name, value in (("TASKS", "3"), ("SHARDS", f"file://{shards}"), ("STAGE", "map")):
        monkeypatch.setenv(f"KUBETUNE_DATAPREP_{name}", value)
    monkeypatch.setenv("JOB_COMPLETION_INDEX", "1")
    first = run(tickets_step(tmp_path / "unused"))
    shard = shards / "shard-00001.pkl"
    written = shard.stat().st_mtime_ns
    again = run(tickets_step(tmp_path / "unused"))
    assert shard.stat().st_mtime_ns == written
    assert again.metrics == first.metrics and again.metrics["read"] > 0
    assert not (shards / "shard-00000.pkl").exists()  # other indexes are other pods' work


def test_bad_stage_settings_are_refused_with_the_variable_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBETUNE_DATAPREP_STAGE", "map")
    monkeypatch.setenv("KUBETUNE_DATAPREP_SHARDS", str(tmp_path / "shards"))
    for tasks, index, named in (("0", "0", TASKS_ENV), ("3", "3", "JOB_COMPLETION_INDEX")):
        monkeypatch.setenv(TASKS_ENV, tasks)
        monkeypatch.setenv("JOB_COMPLETION_INDEX", index)
        with pytest.raises(WorkloadError) as caught:
            run(tickets_step(tmp_path / "out"))
        assert caught.value.reason == "InvalidInput"
        assert named in caught.value.message
    monkeypatch.setenv("JOB_COMPLETION_INDEX", "0")
    monkeypatch.setenv("KUBETUNE_DATAPREP_SHARDS", "ftp://host/shards")
    with pytest.raises(WorkloadError) as caught:
        run(tickets_step(tmp_path / "out"))
    assert caught.value.reason == "InvalidInput" and "ftp://host/shards" in caught.value.message


def test_staged_run_with_shards_on_s3(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.helpers.moto_s3 import moto_s3

    monkeypatch.setenv(TASKS_ENV, "1")
    monkeypatch.setenv("KUBETUNE_CACHE", str(tmp_path / "cache-whole"))
    whole = run(tickets_step(tmp_path / "whole"))
    with moto_s3(monkeypatch) as s3:
        s3.create_bucket(Bucket="artifacts")
        monkeypatch.setenv(TASKS_ENV, "2")
        monkeypatch.setenv("KUBETUNE_DATAPREP_SHARDS", "s3://artifacts/ds/.g1.shards-g1")
        monkeypatch.setenv("KUBETUNE_DATAPREP_STAGE", "map")
        for rank in (1, 0, 1):  # index 1 runs twice: the second pod finds it complete
            monkeypatch.setenv("KUBETUNE_CACHE", str(tmp_path / f"cache-pod-{rank}"))
            monkeypatch.setenv("JOB_COMPLETION_INDEX", str(rank))
            assert run(tickets_step(tmp_path / "unused")).ok
        listed = s3.list_objects_v2(Bucket="artifacts", Prefix="ds/.g1.shards-g1/")
        keys = {o["Key"].rsplit(".shards-g1/", 1)[1]: o for o in listed["Contents"]}
        assert {"shard-00000.pkl", "logs/completions/00001"} <= set(keys)
        monkeypatch.setenv("KUBETUNE_DATAPREP_STAGE", "reduce")
        monkeypatch.setenv("KUBETUNE_CACHE", str(tmp_path / "cache-reduce"))
        reduced = run(tickets_step(tmp_path / "staged"))
        gone = s3.list_objects_v2(Bucket="artifacts", Prefix="ds/.g1.shards-g1/")
    assert reduced.details["version"] == whole.details["version"]  # type: ignore[index]
    assert reduced.content_hash == whole.content_hash
    assert gone.get("KeyCount", 0) == 0  # the shards are removed once the artifact is written
