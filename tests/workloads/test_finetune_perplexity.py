"""One perplexity: FinetuneJob, Compression and Evaluation report the same number for the same
model and validation split (records rendered as training rendered them, BOS included)."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("bitsandbytes")

from kubetune_workloads.compress import run as compress
from kubetune_workloads.evaluate import run as evaluate
from kubetune_workloads.finetune import run as finetune
from test_finetune_support import (
    make_dataset,
    results,
    save_base,
    single_thread,  # noqa: F401 - autouse fixture
    step_spec,
)

from tests.workloads.eval_fixtures.specs import step_spec as eval_spec
from tests.workloads.test_compress import step_spec as compress_spec


def test_finetune_compression_and_evaluation_agree_on_perplexity(tmp_path: Path) -> None:
    base = save_base(tmp_path / "base")
    data_uri = make_dataset(tmp_path / "data", "text", n_train=24, n_val=8)
    model = tmp_path / "model"
    spec = {
        "objective": "continued-pretraining",
        "method": "full",
        "hyperparameters": {"maxSteps": 15, "batchSize": 4, "maxSeqLength": 48},
    }
    trained = finetune(step_spec(model, data_uri, base, spec=spec))
    assert trained.ok, trained.message
    tuned = results(model)
    # continued pre-training: the loop's eval loss and the shared implementation coincide
    assert tuned["perplexity"] == pytest.approx(tuned["eval_perplexity"], rel=1e-4)

    data = Path(data_uri.removeprefix("file://"))
    compressed = compress(
        compress_spec(model, tmp_path / "c", [{"prune": {"sparsity": 0.0}}], data)
    )
    before = compressed.metrics["perplexityBefore"]

    evaluation = evaluate(
        eval_spec(
            tmp_path / "e",
            f"file://{model}",
            metrics=["perplexity"],
            spec={"perplexityData": {"uri": data_uri}},
            perplexityDataset={"uri": data_uri},
        )
    )
    assert trained.metrics["perplexity"] == pytest.approx(before, rel=1e-4)
    assert evaluation.metrics["perplexity"] == pytest.approx(before, rel=1e-4)
