"""What `kubetune run` and `kubetune status` print for a FeedbackLoop and what it owns."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kubetune.cli import app
from kubetune.local.feedback_view import next_schedule
from kubetune.local.store import LocalStore
from kubetune.local.view import (
    by_owner,
    live_table,
    patched_lines,
    status_tables,
    summary_lines,
)
from rich.console import Console
from typer.testing import CliRunner

from tests.helpers.local_manifests import LOOP, LOOP_UID, OWNER, dataset

CHAMPION = "file:///work/artifacts/default/compression/loop-c1/g1"


def body(kind: str, name: str, status: dict[str, Any], cycle: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = (
        dataset(name) if cycle else {"kind": kind, "metadata": {"name": name}, "spec": {}}
    )
    out["kind"] = kind
    out["metadata"]["uid"] = f"local-{kind.lower()}-{name}"
    if cycle:
        out["metadata"]["labels"]["kubetune.dev/cycle"] = cycle
    out["status"] = status
    return out


def loop_body(status: dict[str, Any], triggers: dict[str, Any] | None = None) -> dict[str, Any]:
    loop = copy.deepcopy(LOOP)
    loop["metadata"]["uid"] = LOOP_UID
    if triggers is not None:
        loop["spec"]["triggers"] = triggers
    loop["status"] = status
    return loop


def resources() -> list[dict[str, Any]]:
    ready = {"phase": "Ready"}
    done = {"phase": "Succeeded"}
    return [
        body("Dataset", "loop-c2", ready, cycle="2"),
        body("Dataset", "loop-c1", ready, cycle="1"),
        body("Dataset", "tickets", ready),
        body("Evaluation", "loop-c1", done, cycle="1"),
        body("FinetuneJob", "loop-c1", done, cycle="1"),
        loop_body({"phase": "Running", "activeRuns": ["c2"]}),
    ]


def test_owned_resources_follow_their_owner_by_cycle_and_kind() -> None:
    order = [(depth, b["kind"], b["metadata"]["name"]) for depth, b in by_owner(resources())]
    assert order == [
        (0, "Dataset", "tickets"),
        (0, "FeedbackLoop", "loop"),
        (1, "Dataset", "loop-c1"),
        (1, "FinetuneJob", "loop-c1"),
        (1, "Evaluation", "loop-c1"),
        (1, "Dataset", "loop-c2"),
    ]


def test_a_resource_whose_owner_is_absent_is_shown_at_the_top() -> None:
    orphan = body("Dataset", "loop-c1", {"phase": "Ready"}, cycle="1")
    assert by_owner([orphan]) == [(0, orphan)]


def render(renderable: Any) -> str:
    console = Console(width=160, record=True)
    console.print(renderable)
    return console.export_text()


def test_live_table_indents_owned_resources_under_the_loop() -> None:
    lines = render(live_table(resources())).splitlines()
    names = [line.split("│")[1].rstrip() for line in lines if "│" in line]
    assert names == [
        " Dataset/tickets",
        " FeedbackLoop/loop",
        " └ Dataset/loop-c1",
        " └ FinetuneJob/loop-c1",
        " └ Evaluation/loop-c1",
        " └ Dataset/loop-c2",
    ]


def test_status_tables_add_an_owner_column_only_where_needed() -> None:
    tables = {t.title: render(t) for t in status_tables(resources())}
    datasets = tables["datasets.kubetune.dev"].splitlines()
    assert "OWNER" in datasets[1]
    rows = [line.split()[0] for line in datasets[2:] if line.strip()]
    assert rows == ["tickets", "loop-c1", "loop-c2"]  # the user's first, then by cycle
    assert "FeedbackLoop/loop" in datasets[3] and "FeedbackLoop/loop" not in datasets[2]
    assert "OWNER" not in tables["feedbackloops.kubetune.dev"]


def test_summary_of_an_idle_loop_says_champion_latest_cycle_and_what_comes_next() -> None:
    status = {
        "phase": "Ready",
        "message": "waiting for a trigger: 0/20 new feedback records",
        "champion": CHAMPION,
        "championCycle": 1,
        "outputUri": CHAMPION,
        "pendingRecords": 0,
        "history": [
            {
                "runId": "c1",
                "phase": "Succeeded",
                "reason": "Promoted",
                "message": f"challenger {CHAMPION} promoted",
            },
        ],
        "results": {"rougeL": 0.5},
    }
    triggers = {"minNewRecords": 20, "schedule": "0 3 * * 1"}
    now = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)  # a Thursday
    lines = summary_lines([loop_body(status, triggers)], now=now)
    assert lines == [
        "FeedbackLoop/loop: Ready - waiting for a trigger: 0/20 new feedback records",
        f"    champion: {CHAMPION} (cycle c1)",
        f"    latest cycle c1: Promoted - challenger {CHAMPION} promoted",
        "    new feedback records: 0/20; each `kubetune run` counts them again",
        "    next scheduled cycle: 2026-11-30T03:00+00:00 (0 3 * * 1); `kubetune run` does not "
        "wait for it: run it again then",
        "    metrics: rougeL=0.5",
    ]


def test_summary_of_a_running_loop_has_no_next_cycle_and_owned_lines_are_indented() -> None:
    lines = summary_lines(resources())
    assert "FeedbackLoop/loop: Running" in lines
    assert not any("next" in line or "counts them again" in line for line in lines)
    assert "  Dataset/loop-c1: Ready" in lines


def test_next_schedule_is_the_first_time_after_now() -> None:
    after = datetime(2026, 11, 30, 3, 0, tzinfo=UTC)
    assert next_schedule("0 3 * * 1", after) == datetime(2026, 12, 7, 3, 0, tzinfo=UTC)


def test_patched_lines_and_status_show_recorded_patches(tmp_path: Path) -> None:
    record = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "server", "namespace": "default"},
        "spec": {"template": {"metadata": {"annotations": {"model-uri": CHAMPION}}}},
    }
    expected = (
        "Deployment/server (no cluster, recorded only): "
        f"spec.template.metadata.annotations.model-uri={CHAMPION}"
    )
    assert patched_lines({"Deployment/server": record}) == [expected]
    store = LocalStore(tmp_path)
    store.apply(copy.deepcopy(LOOP), "loop.yaml")
    store.create_resource(dataset("loop-c1"), "FeedbackLoop/loop")
    store.state.patched["Deployment/server"] = record
    store.save()
    result = CliRunner().invoke(app, ["status", "--workdir", str(tmp_path)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert expected in result.output
    assert "OWNER" in result.output and str(OWNER["kind"]) + "/loop" in result.output
