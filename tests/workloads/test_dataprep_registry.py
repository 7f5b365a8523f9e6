"""The dataprep stage registry (one typed class per stage, in order) and the shard format."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from kubetune.api.dataset import DatasetSpec
from kubetune.api.steps import DataprepStepSpec
from kubetune_workloads.dataprep import engine, run, stages
from kubetune_workloads.dataprep.records import Record
from kubetune_workloads.errors import WorkloadError

REPO = Path(__file__).resolve().parents[2]


def make_step(out: Path, data: Path, **spec: Any) -> DataprepStepSpec:
    return DataprepStepSpec.model_validate(
        {
            "producer": {"kind": "Dataset", "name": "ds", "namespace": "default", "runId": "r1"},
            "outputUri": f"file://{out}",
            "spec": {"sources": [{"uri": f"file://{data}"}], **spec},
        }
    )


def tickets(path: Path, n: int) -> Path:
    rows = [
        {"text": f"Ticket {i}: my sync client stops at {i * 37} files; the {i}th retry fails."}
        for i in range(n)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_the_documented_pipeline_table_is_the_registry() -> None:
    doc = (REPO / "docs" / "dataset.md").read_text()
    table = re.search(r"\| # \| stage \|.*?\n\n", doc, re.S)
    assert table is not None
    rows = [line.split("|") for line in table.group(0).splitlines()[2:] if line]
    assert [row[2].strip() for row in rows] == stages.stage_names()
    for row, stage in zip(rows, stages.STAGES, strict=True):
        for reason in stage.reasons:
            assert f"`{reason}`" in row[3], (stage.name, reason)


def test_stats_and_card_list_stages_in_registry_order(tmp_path: Path) -> None:
    data = tickets(tmp_path / "in.jsonl", 40)
    result = run(make_step(tmp_path / "out", data))
    assert result.ok
    stats = json.loads((tmp_path / "out" / "stats.json").read_text())
    met = [s["stage"] for s in stats["stages"]]
    assert met == [n for n in stages.stage_names() if n in met]
    assert met[:4] == ["read", "schema", "clean", "quality"] and "near_dedup" in met
    card = (tmp_path / "out" / "README.md").read_text()
    rows = re.findall(r"^\| (\w+) \| \d+ \| \d+ \|", card, re.M)
    assert rows == met


class ShortTicketNumbers(stages.RecordStage):
    """A filter added the documented way: one class, one line in STAGES."""

    name = "ticket_numbers"
    reasons = ("small_ticket_number",)

    @classmethod
    def enabled(cls, spec: DatasetSpec) -> bool:
        return spec.curation is None

    def apply(self, record: Record, text: str) -> str | None:
        match = re.match(r"Ticket (\d+):", text)
        return "small_ticket_number" if match and int(match.group(1)) < 10 else None


@pytest.mark.parametrize("tasks", ["1", "2"])
def test_a_new_filter_is_one_class_and_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tasks: str
) -> None:
    at = stages.STAGES.index(stages.Pii)
    monkeypatch.setattr(
        stages, "STAGES", (*stages.STAGES[:at], ShortTicketNumbers, *stages.STAGES[at:])
    )
    monkeypatch.setenv(engine.TASKS_ENV, tasks)
    data = tickets(tmp_path / "in.jsonl", 1200)
    result = run(make_step(tmp_path / "out", data, cleaning={"nearDedup": {"enabled": False}}))
    assert result.details["stageCounts"]["ticket_numbers.small_ticket_number"] == 10  # type: ignore[index]
    stats = json.loads((tmp_path / "out" / "stats.json").read_text())
    met = [s["stage"] for s in stats["stages"]]
    assert met.index("offensive") < met.index("ticket_numbers") < met.index("exact_dedup")
    card = (tmp_path / "out" / "README.md").read_text()
    assert "| ticket_numbers | 1200 | 1190 | small_ticket_number: 10 |" in card
    # Disabled by the spec: not run, not listed.
    result = run(make_step(tmp_path / "off", data, curation={"includeKeywords": ["sync"]}))
    assert not any(k.startswith("ticket_numbers.") for k in result.details["stageCounts"])  # type: ignore[union-attr]


def test_a_truncated_shard_is_refused(tmp_path: Path) -> None:
    data = tickets(tmp_path / "in.jsonl", 1200)
    spec = make_step(tmp_path / "out", data).spec
    folder = tmp_path / "map"
    engine.run_map(spec, folder, 2, workers=1)
    whole = list(engine.read_mapped(folder, 2))
    assert [m.record.position for m in whole] == sorted(m.record.position for m in whole)
    assert len(whole) == 1200
    shard = folder / "shard-00001.pkl"
    shard.write_bytes(shard.read_bytes()[:-5])  # a task that died mid-frame
    with pytest.raises(WorkloadError, match="map task 1: shard missing or truncated"):
        list(engine.read_mapped(folder, 2))
