"""The character-level RNN: trains through the finetune step, saves as config + safetensors,
loads through modelio and AutoModelForCausalLM, and generates text."""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from kubetune_workloads.finetune import run  # noqa: E402
from kubetune_workloads.modelio import load_model  # noqa: E402
from kubetune_workloads.rnn import KubetuneRNNConfig, KubetuneRNNForCausalLM  # noqa: E402
from kubetune_workloads.tokenizer_train import train_tokenizer  # noqa: E402
from test_finetune_support import (  # noqa: E402
    make_dataset,
    results,
    single_thread,  # noqa: F401 - autouse fixture
    step_spec,
    train_losses,
)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_char_rnn_trains_saves_and_generates(tmp_path: Path, cell: str) -> None:
    data = make_dataset(tmp_path / "data", "text")
    out = tmp_path / "out"
    spec = {
        "objective": "continued-pretraining",
        "method": "full",
        "model": {
            "architecture": {"family": cell, "layers": 2, "hiddenSize": 64, "contextLength": 256}
        },
        "hyperparameters": {"maxSteps": 120, "learningRate": 2e-2, "maxSeqLength": 64},
    }
    assert run(step_spec(out, data, None, spec=spec)).ok

    losses = train_losses(out)
    assert losses[-1] < losses[0] - 1.0
    assert {"config.json", "model.safetensors"} <= {p.name for p in out.iterdir()}
    loaded = load_model("file://" + str(out))
    assert type(loaded.model).__name__ == "KubetuneRNNForCausalLM"
    assert loaded.model.config.cell == cell
    assert len(loaded.tokenizer) < 64  # one token per character seen
    prompt = loaded.tokenizer("The sky is", return_tensors="pt").input_ids
    generated = loaded.model.generate(
        prompt, max_new_tokens=12, do_sample=False, pad_token_id=loaded.tokenizer.pad_token_id
    )
    text = loaded.tokenizer.decode(generated[0, prompt.shape[1] :], skip_special_tokens=True)
    assert generated.shape[1] > prompt.shape[1] and text.strip()
    assert results(out)["eval_perplexity"] < 3  # it learned the character statistics


def test_rnn_round_trips_through_auto_classes(tmp_path: Path) -> None:
    from kubetune_workloads.rnn import register
    from transformers import AutoModelForCausalLM

    register()
    tok = train_tokenizer(["hello world"], "char")
    model = KubetuneRNNForCausalLM(
        KubetuneRNNConfig(vocab_size=len(tok), cell="gru", num_layers=1, hidden_size=16)
    ).eval()
    model.save_pretrained(str(tmp_path), safe_serialization=True)
    again = AutoModelForCausalLM.from_pretrained(str(tmp_path)).eval()
    ids = tok("hello", return_tensors="pt").input_ids
    with torch.no_grad():
        assert torch.allclose(model(input_ids=ids).logits, again(input_ids=ids).logits)
    assert not list(tmp_path.glob("*.bin"))
