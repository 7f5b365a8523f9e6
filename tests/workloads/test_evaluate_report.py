"""Evaluate step: the HTML report is self-contained and renders in headless Chromium."""

from __future__ import annotations

from pathlib import Path

import pytest
from kubetune_workloads.evaluate import run

from tests.helpers.chromium import screenshot
from tests.workloads.eval_fixtures.models import prompt, uri
from tests.workloads.eval_fixtures.png import colors, read_png
from tests.workloads.eval_fixtures.specs import domain_cases, step_spec


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


def test_report_is_self_contained_and_shows_the_run(report: Path) -> None:
    html = report.read_text()
    assert "<script" not in html.lower()
    assert "http://" not in html and "https://" not in html and "<link" not in html
    assert html.count("<svg") >= 4  # a chart per metric
    assert "Open Settings then Security" in html  # candidate output, side by side
    assert "PASSED" in html and "exactMatch&gt;=0.5" in html
    assert "gender" in html and "support" in html


def test_report_renders_in_headless_chromium(report: Path, tmp_path: Path) -> None:
    png = screenshot(report, tmp_path, (1280, 2000))
    width, height, _ = read_png(png)
    assert (width, height) == (1280, 2000)
    pixels = colors(png)
    assert len(pixels) > 50  # text, tables and charts, not a blank page
    assert (0x25, 0x63, 0xEB) in pixels  # candidate bars drawn
    assert (0xF5, 0x9E, 0x0B) in pixels  # baseline bars drawn
