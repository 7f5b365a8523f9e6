"""`kubetune collector`'s limits: each one refuses a value that would refuse every request, with
an error naming the option, and the chart's rendered arguments pass the same checks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import typer.main
from kubetune.cli import app
from kubetune.collector.config import MINIMUMS, CollectorConfig
from typer.testing import CliRunner

from tests.unit import test_helm_chart as chart

runner = CliRunner()


def invoke(tmp_path: Path, *args: str) -> tuple[int, str]:
    tokens = tmp_path / "tokens.yaml"
    tokens.write_text("- name: app\n  token: tok-0123456789\n  loops: ['*/*']\n")
    base = ["collector", "--store", f"file://{tmp_path / 'store'}", "--tokens", str(tokens)]
    result = runner.invoke(app, [*base, *args])
    return result.exit_code, result.output


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--max-body-bytes", "-1", "--max-body-bytes must be at least 1024, not -1"),
        ("--max-body-bytes", "0", "--max-body-bytes must be at least 1024, not 0"),
        ("--max-records", "0", "--max-records must be at least 1, not 0"),
        ("--max-record-bytes", "10", "--max-record-bytes must be at least 1024, not 10"),
        ("--max-pending-bytes", "-5", "--max-pending-bytes must be at least 1024, not -5"),
        ("--max-inflight", "0", "--max-inflight must be at least 1, not 0"),
        ("--body-timeout", "0", "--body-timeout must be at least 0.1, not 0"),
        ("--body-timeout", "nan", "--body-timeout must be a finite number, not nan"),
        ("--commit-timeout", "0.05", "--commit-timeout must be at least 0.1, not 0.05"),
        ("--segment-bytes", "0", "--segment-bytes must be at least 1024, not 0"),
        ("--segment-seconds", "-1", "--segment-seconds must be at least 1, not -1"),
        ("--retention-hours", "0", "--retention-hours must be at least 0.01, not 0"),
        ("--retention-hours", "inf", "--retention-hours must be a finite number, not inf"),
    ],
)
def test_a_limit_below_its_minimum_is_a_clear_cli_error(
    tmp_path: Path, option: str, value: str, message: str
) -> None:
    code, output = invoke(tmp_path, option, value)
    assert code == 2 and message in output, output
    assert not (tmp_path / "store").exists()  # refused before anything was served or written


def test_a_port_out_of_range_is_refused(tmp_path: Path) -> None:
    for port in ("-1", "70000"):
        code, output = invoke(tmp_path, "--port", port)
        assert code == 2 and "--port" in output, output


def test_every_limit_of_the_config_is_checked() -> None:
    limits = {"max_body_bytes", "max_records", "max_record_bytes", "max_inflight"}
    limits |= {"max_pending_bytes", "body_timeout", "segment_bytes", "segment_seconds"}
    limits |= {"commit_timeout"}
    assert set(MINIMUMS) == limits | {"retention_seconds"}
    CollectorConfig(store="file:///x")  # the defaults pass
    with pytest.raises(ValueError, match="--max-record-bytes must be at least 1024"):
        CollectorConfig(store="file:///x", max_record_bytes=1023)


def config_of(args: list[str]) -> CollectorConfig:
    """The config `kubetune collector ARGS` would serve with, without serving it."""
    group: Any = typer.main.get_command(app)  # typer's own click: no click.Group to check
    collector = group.commands["collector"]
    params: dict[str, Any] = collector.make_context("collector", list(args)).params
    return CollectorConfig(
        store=params["store"],
        tokens_file=params["tokens"],
        loops=tuple(params["loop"] or ()),
        max_body_bytes=params["max_body_bytes"],
        max_records=params["max_records"],
        max_record_bytes=params["max_record_bytes"],
        max_inflight=params["max_inflight"],
        max_pending_bytes=params["max_pending_bytes"],
        body_timeout=params["body_timeout"],
        commit_timeout=params["commit_timeout"],
        segment_bytes=params["segment_bytes"],
        segment_seconds=params["segment_seconds"],
        retention_seconds=params["retention_hours"] * 3600.0,
    )


def test_the_charts_collector_arguments_pass_the_checks() -> None:
    helm, reason = chart._helm_or_reason()
    if helm is None:
        pytest.skip(f"helm unavailable: {reason}")
    objects = chart.render(
        helm,
        "--set=collector.enabled=true",
        "--set=collector.store=pvc://feedback/loops",
        "--set=collector.tokensSecret=collector-tokens",
    )
    (deployment,) = [
        o
        for o in objects
        if o["kind"] == "Deployment" and o["metadata"]["name"].endswith("-collector")
    ]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["kubetune", "collector"]
    config = config_of(container["args"])
    assert config.store == "pvc://feedback/loops" and config.max_body_bytes == 8 << 20
