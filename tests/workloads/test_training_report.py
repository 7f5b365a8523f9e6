"""The training report of a resumed run: self-contained, every curve drawn, the checkpoints and
the resume marked, and it renders in headless Chromium without console errors."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

pytest.importorskip("torch")

from kubetune_workloads.finetune import run
from test_finetune_support import (
    make_dataset,
    results,
    save_base,
    single_thread,  # noqa: F401 - autouse fixture
    step_spec,
)

from tests.helpers.chromium import screenshot
from tests.workloads.eval_fixtures.png import colors, read_png

SPEC = {
    "objective": "continued-pretraining",
    "method": "full",
    "hyperparameters": {"maxSteps": 8, "batchSize": 4, "maxSeqLength": 32, "loggingSteps": 1},
    "evaluation": {"everySteps": 2},
    "checkpointing": {"everySteps": 3, "keepLast": 3},
}
TRAIN = (0x25, 0x63, 0xEB)
EVAL = (0xF5, 0x9E, 0x0B)
RESUME = (0xDC, 0x26, 0x26)


@pytest.fixture(scope="module")
def resumed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run resumed from the checkpoint of step 6 of an identical earlier run."""
    root = tmp_path_factory.mktemp("report")
    base = save_base(root / "base")
    data = make_dataset(root / "data", "text", n_train=24, n_val=4)
    assert run(step_spec(root / "first", data, base, spec=SPEC)).ok
    shutil.copytree(root / "first" / "checkpoints", root / "ckpt")
    second = root / "second"
    step = step_spec(second, data, base, spec=SPEC, checkpoint_uri=f"file://{root / 'ckpt'}")
    result = run(step)
    assert result.ok and results(second)["resumed_from_step"] == 6
    assert result.report_uri == f"file://{second}/training-report.html"
    return second / "training-report.html"


def test_the_report_marks_checkpoints_and_the_resume_on_every_curve(resumed: Path) -> None:
    html = resumed.read_text()
    assert "<script" not in html.lower() and "<link" not in html
    assert "http://" not in html and "https://" not in html
    for title in ("Loss", "Eval perplexity", "Learning rate", "Gradient norm", "Tokens per"):
        assert f">{title}" in html
    assert "Peak memory (GiB)" in html
    charts = html.count("<svg")
    assert charts == 6
    train = re.search(r'data-series="train" points="([^"]+)"', html)
    assert train is not None and len(train.group(1).split()) == 8  # steps 1..8, one curve
    assert html.count('data-series="eval"') == 2  # loss and perplexity charts
    assert html.count('class="marker-resume"') == charts
    assert html.count('class="marker-checkpoint"') == 2 * charts  # steps 3 and 6
    assert "Resumed from the checkpoint of step 6" in html and "resumed @6" in html
    assert not list(resumed.parent.glob(".training-report*"))  # renamed into place


def test_the_report_renders_in_headless_chromium(resumed: Path, tmp_path: Path) -> None:
    png = screenshot(resumed, tmp_path, (1280, 1400))
    assert read_png(png)[:2] == (1280, 1400)
    pixels = colors(png)
    assert TRAIN in pixels  # the training loss curve
    assert EVAL in pixels  # the evaluation curves
    assert RESUME in pixels  # the resume marker


def test_a_single_point_a_rollback_and_no_data_still_render(tmp_path: Path) -> None:
    from kubetune_workloads.finetune.training_report import render

    step = step_spec(tmp_path / "o", "file:///d", "file:///m", spec=SPEC)
    records = [
        {"step": 1, "loss": 2.0, "learning_rate": 0.01},
        {"step": 4, "event": "checkpoint"},
        {"step": 4, "event": "rollback"},
    ]
    html = render(step, records, {"steps": 1})
    assert html.count("<svg") == 2  # loss and learning rate: the only curves logged
    assert html.count('class="marker-rollback"') == 2 and "rolled back @4" in html
    assert "nan" not in html.lower()
    empty = render(step, [], {})
    assert "<svg" not in empty and "No curves." in empty
