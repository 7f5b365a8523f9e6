"""Transfer learning works: pre-trained on general text, then fine-tuned on a small domain
split, a model beats the same architecture trained from scratch on the domain split alone
(validation perplexity, same step budget)."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

pytest.importorskip("torch")

from kubetune_workloads.datasetio import DatasetInfo
from kubetune_workloads.finetune import run
from kubetune_workloads.tokenizer_train import train_tokenizer
from test_finetune_support import results, single_thread, step_spec  # noqa: F401

GENERAL = Path(__file__).parents[2] / "examples" / "quickstart" / "data" / "general.txt"
ARCH = {
    "family": "llama",
    "layers": 2,
    "hiddenSize": 64,
    "heads": 4,
    "contextLength": 128,
}


def general_paragraphs() -> list[str]:
    if GENERAL.is_file():
        text = GENERAL.read_text(encoding="utf-8")[:120_000]
        return [p.strip() for p in text.split("\n\n") if p.strip()]
    rng = random.Random(0)  # a generated stand-in when the quickstart corpus is absent
    nouns = ["river", "forest", "village", "farmer", "bird", "garden", "market", "mountain"]
    verbs = ["watches", "crosses", "finds", "opens", "visits", "leaves", "follows"]
    return [
        " ".join(
            f"The {rng.choice(nouns)} {rng.choice(verbs)} the {rng.choice(nouns)}."
            for _ in range(6)
        )
        for _ in range(400)
    ]


def domain_texts(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    actions = ["share a folder", "reset your password", "restore a deleted file", "add a device"]
    places = ["the Settings page", "the Files tab", "the account menu", "the web app"]
    tips = [
        "It only takes a minute.",
        "You will get an email when it is done.",
        "Ask your admin if the option is missing.",
        "The change applies to every device.",
    ]
    return [
        f"To {rng.choice(actions)}, open {rng.choice(places)} and follow the steps. "
        f"{rng.choice(tips)} {rng.choice(tips)}"
        for _ in range(n)
    ]


def dataset(path: Path, train: list[str], val: list[str], tokenizer: object) -> str:
    import json

    path.mkdir(parents=True)
    for split, texts in (("train", train), ("validation", val)):
        (path / f"{split}.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    tokenizer.save_pretrained(str(path / "tokenizer"))  # type: ignore[attr-defined]
    info = DatasetInfo(schema_="text", records={"train": len(train)}, tokenizer="tokenizer")
    (path / "dataset.json").write_text(info.to_json())
    return "file://" + str(path)


def _train(out: Path, data: str, model: str | None, steps: int, lr: float) -> float:
    spec = {
        "objective": "continued-pretraining",
        "method": "full",
        "hyperparameters": {
            "maxSteps": steps,
            "learningRate": lr,
            "maxSeqLength": 64,
            "batchSize": 8,
            "loggingSteps": 50,
        },
    }
    if model is None:
        spec["model"] = {"architecture": ARCH}
    else:
        spec["model"] = {"from": {"uri": model}}
    assert run(step_spec(out, data, model, spec=spec)).ok
    return results(out)["eval_perplexity"]


def test_pretrained_then_finetuned_beats_scratch_on_the_domain(tmp_path: Path) -> None:
    general = general_paragraphs()
    domain_train, domain_val = domain_texts(12, seed=1), domain_texts(24, seed=2)
    tokenizer = train_tokenizer(general + domain_train, "bpe", vocab_size=512)
    general_data = dataset(tmp_path / "general", general[:-8], general[-8:], tokenizer)
    domain_data = dataset(tmp_path / "domain", domain_train, domain_val, tokenizer)

    _train(tmp_path / "pretrained", general_data, None, steps=200, lr=3e-3)
    transfer = _train(
        tmp_path / "transfer", domain_data, "file://" + str(tmp_path / "pretrained"), 30, 1e-3
    )
    scratch = _train(tmp_path / "scratch", domain_data, None, steps=30, lr=3e-3)

    assert transfer < scratch * 0.8, (transfer, scratch)
