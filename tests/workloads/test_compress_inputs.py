"""Damaged model files and models with nothing to quantize: clear, named failures through the
entry point (``python -m kubetune_workloads``), never an InternalError or a false success."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("torch")
pytest.importorskip("bitsandbytes")

from kubetune_workloads.modelio import ModelInfo, save_model

from tests.helpers.tiny import save_tiny_llama, tiny_tokenizer
from tests.workloads.eval_fixtures.specs import step_spec as eval_spec
from tests.workloads.test_compress import step_spec as compress_spec


def _entry(step: str, spec_json: str, tmp_path: Path) -> tuple[int, dict[str, Any]]:
    spec_file = tmp_path / f"{step}-spec.json"
    spec_file.write_text(spec_json)
    term = tmp_path / f"{step}-termination"
    proc = subprocess.run(
        [sys.executable, "-m", "kubetune_workloads", step, "--spec", str(spec_file)],
        env={**os.environ, "OMP_NUM_THREADS": "1", "KUBETUNE_TERMINATION_LOG": str(term)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    return proc.returncode, json.loads(term.read_text())


@pytest.mark.parametrize(
    ("damage", "file", "says"),
    [
        ("truncate-config", "config.json", "is not valid JSON"),
        ("random-weights", "model.safetensors", "is not a valid safetensors file"),
        ("truncate-weights", "model.safetensors", "truncated"),
    ],
)
def test_a_damaged_model_is_invalid_input_naming_the_file(
    tmp_path: Path, damage: str, file: str, says: str
) -> None:
    model = save_tiny_llama(tmp_path / "model")
    target = model / file
    data = target.read_bytes()
    if damage == "random-weights":
        target.write_bytes(os.urandom(len(data)))
    else:
        target.write_bytes(data[: len(data) // 2])
    out = tmp_path / "out"
    spec = compress_spec(model, out, [{"quantize": {"bits": 8}}], None)
    code, result = _entry("compress", spec.to_json(), tmp_path)
    assert (code, result["reason"]) == (2, "InvalidInput"), result
    assert str(target) in result["message"] and says in result["message"]
    if damage != "random-weights":
        return  # the same loader refuses it for every kind; one Evaluation is enough
    code, result = _entry("evaluate", eval_spec(out, f"file://{model}").to_json(), tmp_path)
    assert (code, result["reason"]) == (2, "InvalidInput"), result
    assert str(target) in result["message"] and says in result["message"]


def test_quantizing_a_model_with_nothing_quantizable_fails_clearly(tmp_path: Path) -> None:
    from kubetune_workloads.rnn import KubetuneRNNConfig, KubetuneRNNForCausalLM, register

    register()
    tok = tiny_tokenizer()
    config = KubetuneRNNConfig(vocab_size=len(tok), cell="gru", num_layers=1, hidden_size=32)
    model = KubetuneRNNForCausalLM(config)
    save_model(model, tok, tmp_path / "gru", ModelInfo(format="full", family="kubetune_rnn"))
    out = tmp_path / "out"
    spec = compress_spec(tmp_path / "gru", out, [{"quantize": {"bits": 8}}], None)
    code, result = _entry("compress", spec.to_json(), tmp_path)
    assert (code, result["reason"]) == (2, "NothingToQuantize"), result
    assert "kubetune_rnn" in result["message"] and "lm_head" in result["message"]
    assert not out.exists()  # no artifact, so no quantization_config on an unquantized model
