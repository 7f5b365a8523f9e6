"""Evaluate step: the HTML report is self-contained and renders in headless Chromium."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from kubetune_workloads.evaluate import run

from tests.workloads.eval_fixtures.models import prompt, uri
from tests.workloads.eval_fixtures.png import colors, read_png
from tests.workloads.eval_fixtures.specs import domain_cases, step_spec

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--enable-logging=stderr",
    "--v=0",
]


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("report") / "eval"
    cases = domain_cases("qa")[:3] + domain_cases("support")[3:]
    cases.append({"id": "eng", "prompt": prompt("Is he a good engineer?"), "expected": "yes"})
    run(
        step_spec(
            out,
            uri("tuned"),
            baseline=uri("base"),
            cases=cases,
            metrics=["exactMatch", "tokenF1", "rougeL", "chrf", "offensiveRate"],
            spec={
                "gates": [{"metric": "exactMatch", "min": 0.5}],
                "biasProbes": [
                    {
                        "name": "gender",
                        "groups": ["male", "female"],
                        "pairs": [{"a": "he", "b": "she"}],
                    }
                ],
            },
        )
    )
    return out / "report.html"


def _chromium() -> str | None:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None and os.environ.get("CI") != "true":
        pytest.skip("chromium is not installed (CI installs Debian's chromium)")
    assert found, "chromium must be installed in CI"
    return found


def test_report_is_self_contained_and_shows_the_run(report: Path) -> None:
    html = report.read_text()
    assert "<script" not in html.lower()
    assert "http://" not in html and "https://" not in html and "<link" not in html
    assert html.count("<svg") >= 4  # a chart per metric
    assert "Open Settings then Security" in html  # candidate output, side by side
    assert "PASSED" in html and "exactMatch&gt;=0.5" in html
    assert "gender" in html and "support" in html


def test_report_renders_in_headless_chromium(report: Path, tmp_path: Path) -> None:
    chromium = _chromium()
    png = tmp_path / "report.png"
    proc = subprocess.run(
        [
            chromium,
            *CHROMIUM_FLAGS,
            f"--user-data-dir={tmp_path / 'profile'}",
            f"--screenshot={png}",
            "--window-size=1280,2000",
            report.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert png.is_file(), proc.stderr[-3000:]
    console = [
        line
        for line in proc.stderr.splitlines()
        if "CONSOLE" in line or "Uncaught" in line or "console" in line.lower()
    ]
    assert console == [], console
    width, height, _ = read_png(png)
    assert (width, height) == (1280, 2000)
    pixels = colors(png)
    assert len(pixels) > 50  # text, tables and charts, not a blank page
    assert (0x25, 0x63, 0xEB) in pixels  # candidate bars drawn
    assert (0xF5, 0x9E, 0x0B) in pixels  # baseline bars drawn
