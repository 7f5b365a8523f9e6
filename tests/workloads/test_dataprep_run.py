"""The dataprep step end to end: a messy corpus, determinism, schemas, tokenizers, mixing."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from kubetune.api.steps import MANIFEST_FILE, DataprepStepSpec, StepResult
from kubetune_workloads.dataprep import run
from kubetune_workloads.dataprep.pii import luhn_ok
from kubetune_workloads.datasetio import open_dataset
from kubetune_workloads.manifest import read_manifest

REPO = Path(__file__).resolve().parents[2]
TICKETS = REPO / "examples" / "quickstart" / "data" / "support_tickets.jsonl"
EVAL_PROMPTS = REPO / "examples" / "quickstart" / "data" / "eval_prompts.jsonl"
GENERATOR = REPO / "examples" / "quickstart" / "data" / "generate_tickets.py"
DOMAIN = [
    "nimbus", "sync", "share", "link", "file", "folder", "storage", "quota", "plan",
    "subscription", "billing", "invoice", "refund", "charge", "payment", "card", "password",
    "account", "2fa", "two-factor", "authenticator", "login", "log in", "sign in", "app",
    "client", "desktop", "mobile", "token", "api", "upload", "download", "restore", "trash",
    "deleted", "version", "backup", "photos", "camera", "offline", "encrypted", "device",
]  # fmt: skip


def make_step(out: Path, sources: list[dict[str, Any]], **spec: Any) -> DataprepStepSpec:
    return DataprepStepSpec.model_validate(
        {
            "producer": {"kind": "Dataset", "name": "ds", "namespace": "default", "runId": "r1"},
            "outputUri": f"file://{out}",
            "spec": {"sources": sources, **spec},
        }
    )


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def all_text(path: Path) -> str:
    return (path / "train.jsonl").read_text() + (path / "validation.jsonl").read_text()


def support_texts(n: int, seed: int = 0) -> list[dict[str, str]]:
    topics = ["password reset", "shared links", "storage quota", "sync conflicts", "billing"]
    return [
        {
            "text": f"Ticket {i} from customer {seed}: I need help with {topics[i % 5]} on my "
            f"Nimbus Drive account number {i * 7919 % 1000}; the app shows issue code {i}."
        }
        for i in range(n)
    ]


def _generator_counts() -> dict[str, Any]:
    spec = importlib.util.spec_from_file_location("generate_tickets", GENERATOR)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return {
        "COUNTS": module.COUNTS,
        "BROKEN": module.BROKEN_COUNTS,
        "OFFENSIVE_WORDS": module.OFFENSIVE_WORDS,
    }


@pytest.mark.skipif(not TICKETS.is_file(), reason="quickstart corpus not generated")
def test_messy_support_tickets_full_run(tmp_path: Path) -> None:
    mess = _generator_counts() if GENERATOR.is_file() else None
    out = tmp_path / "tickets"
    step = make_step(
        out,
        [{"uri": f"file://{TICKETS}"}],
        schema="instruction",
        curation={"includeKeywords": DOMAIN, "matching": "stem", "languages": ["en"]},
        cleaning={
            "nearDedup": {"ngram": 3, "threshold": 0.7},
            "decontaminate": [f"file://{EVAL_PROMPTS}"],
        },
        safety={
            "offensive": {"extraTerms": ["useless", "garbage", "sucks", "pathetic"]},
            "balance": {"field": "customer_gender"},
        },
        tokenizer={"train": {"type": "bpe", "vocabSize": 400}, "maxTokens": 256},
    )
    result = run(step)
    assert result.ok and result.reason == "Completed"
    counts = result.details["stageCounts"]  # type: ignore[index]
    if mess:
        broken = mess["BROKEN"]
        assert counts["read.invalid_json"] == broken["truncated_json"] + broken["not_json"]
        assert counts["schema.missing_field"] == broken["missing_output"]
        assert counts["offensive.offensive_terms"] == mess["COUNTS"]["offensive"]
        assert counts["curation.low_relevance"] == mess["COUNTS"]["off_domain"]
        dups = mess["COUNTS"]["exact_duplicate"] + mess["COUNTS"]["near_duplicate"]
        assert counts["exact_dedup.duplicate"] + counts["near_dedup.near_duplicate"] >= 0.9 * dups

    # What a user checks in the artifact: no PII, no offensive words, no markup, no mojibake.
    raw = TICKETS.read_text(encoding="utf-8", errors="replace")
    text = all_text(out)
    emails = set(re.findall(r"[\w.+-]+@[\w-]+\.[\w.]+", raw))
    cards = {c for c in re.findall(r"\b(?:\d{4} ){3}\d{4}\b", raw) if luhn_ok(c.replace(" ", ""))}
    assert emails and cards
    assert not [e for e in emails if e in text]
    assert not [c for c in cards if c in text]
    assert "<EMAIL>" in text and "<CREDIT_CARD>" in text
    words = set(re.findall(r"\w+", text.lower()))
    if mess:
        assert not words & {w for w in mess["OFFENSIVE_WORDS"] if w.isalpha()} - {"sucks"}
    assert not re.search(r"</?(p|div|b|br)>", text)
    assert "â€" not in text and "Ã" not in text

    # Artifact layout and metadata.
    dataset = open_dataset(out)
    assert dataset.schema == "instruction" and dataset.tokenizer_path == out / "tokenizer"
    train, validation = dataset.records("train"), dataset.records("validation")
    assert len(train) + len(validation) == result.details["records"]  # type: ignore[index]
    assert len(validation) > 0 and set(train[0]) >= {"instruction", "input", "output"}
    stats = json.loads((out / "stats.json").read_text())
    assert stats["records"]["out"] == dataset.info.records["train"] + len(validation)
    assert stats["tokens"]["total"] == result.details["tokens"]  # type: ignore[index]
    assert stats["tokens"]["max"] <= 256
    assert set(stats["balance"]["before"]) >= {"male", "female"}
    assert stats["languages"]["counts"]["en"] > 0
    assert stats["malformed"]["examples"]["invalid_json"]
    assert dataset.info.version == result.details["version"]  # type: ignore[index]
    manifest = read_manifest(out)
    assert manifest and manifest.content_hash == result.content_hash
    assert "Dataset card" in (out / "README.md").read_text()
    assert len(result.termination_message().encode()) <= 4096


def test_same_input_and_spec_give_same_hash_changes_give_new_version(tmp_path: Path) -> None:
    data = write_jsonl(tmp_path / "in.jsonl", support_texts(60))
    sources = [{"uri": f"file://{data}"}]
    first = run(make_step(tmp_path / "a", sources))
    second = run(make_step(tmp_path / "b", sources))
    assert first.content_hash == second.content_hash
    assert first.details["version"] == second.details["version"]  # type: ignore[index]
    assert (tmp_path / "a" / "train.jsonl").read_bytes() == (
        tmp_path / "b" / "train.jsonl"
    ).read_bytes()

    reseeded = run(make_step(tmp_path / "c", sources, split={"seed": 7}))
    assert reseeded.details["version"] != first.details["version"]  # type: ignore[index]

    # More input: a new version, and the split of the old records does not move.
    write_jsonl(data, support_texts(60) + support_texts(5, seed=1))
    grown = run(make_step(tmp_path / "d", sources))
    assert grown.details["version"] != first.details["version"]  # type: ignore[index]
    before = set((tmp_path / "a" / "validation.jsonl").read_text().splitlines())
    after = set((tmp_path / "d" / "validation.jsonl").read_text().splitlines())
    assert before <= after


def test_chat_sharegpt_to_parquet_with_model_tokenizer_and_truncation(tmp_path: Path) -> None:
    from tests.helpers.tiny import save_tiny_llama

    model = save_tiny_llama(tmp_path / "model")
    rows = [
        {
            "conversations": [
                {"from": "human", "value": f"How do I share folder {i}?"},
                {"from": "agent", "value": "Open the folder, choose Share and copy the link. " * 8},
            ]
        }
        for i in range(12)
    ]
    data = write_jsonl(tmp_path / "chat.jsonl", rows)
    step = make_step(
        tmp_path / "out",
        [{"uri": f"file://{data}"}],
        schema="chat",
        roleMapping={"agent": "assistant"},
        outputFormat="parquet",
        cleaning={"nearDedup": {"enabled": False}, "quality": {"enabled": False}},
        tokenizer={"maxTokens": 60, "overLength": "truncate"},
    )
    step = step.model_copy(update={"tokenizer_uri": f"file://{model}"})
    result = run(step)
    assert result.ok and result.details["records"] == 12  # type: ignore[index]
    dataset = open_dataset(tmp_path / "out")
    assert dataset.info.format == "parquet"
    records = dataset.records("train") + dataset.records("validation")
    assert len(records) == 12
    assert [m["role"] for m in records[0]["messages"]] == ["user", "assistant"]
    stats = json.loads((tmp_path / "out" / "stats.json").read_text())
    assert stats["tokens"]["max"] <= 60
    assert stats["changed"]["tokens.truncated"] == 12


def test_weighted_sources_and_rebalancing(tmp_path: Path) -> None:
    a = write_jsonl(tmp_path / "a.jsonl", [{**r, "g": "x"} for r in support_texts(40)])
    b = write_jsonl(tmp_path / "b.jsonl", [{**r, "g": "y"} for r in support_texts(40, seed=2)])
    sources = [{"uri": f"file://{a}", "weight": 2}, {"uri": f"file://{b}", "weight": 0.5}]
    step = make_step(
        tmp_path / "mix",
        sources,
        cleaning={"nearDedup": {"enabled": False}},
        safety={"balance": {"field": "g"}},
    )
    result = run(step)
    stats = json.loads((tmp_path / "mix" / "stats.json").read_text())
    kept_b = stats["balance"]["after"]["y"]["count"]
    assert result.details["records"] == 80 + kept_b  # type: ignore[index]
    assert 10 <= kept_b <= 30  # about half of 40

    step = make_step(
        tmp_path / "bal",
        [{"uri": f"file://{a}"}, {"uri": f"file://{b}"}],
        cleaning={"nearDedup": {"enabled": False}},
        safety={"balance": {"field": "g", "targets": {"x": 0.8, "y": 0.2}, "rebalance": True}},
    )
    result = run(step)
    stats = json.loads((tmp_path / "bal" / "stats.json").read_text())
    assert stats["balance"]["after"]["x"]["count"] == 40
    assert stats["balance"]["after"]["y"]["count"] == 10
    assert result.details["stageCounts"]["balance.rebalanced"] == 30  # type: ignore[index]


def test_cli_writes_termination_message(tmp_path: Path) -> None:
    data = tmp_path / "docs"
    data.mkdir()
    (data / "a.txt").write_text("First document about shared folders.\n\nSecond one on sync.\n")
    (data / "b.txt").write_text("Third document about billing and refunds for the account.\n")
    step = make_step(
        tmp_path / "out",
        [{"uri": f"file://{data}", "format": "text"}],
        split={"validationFraction": 0.0},
    )
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(step.to_json())
    log = tmp_path / "termination-log"
    env = {**os.environ, "KUBETUNE_TERMINATION_LOG": str(log)}
    proc = subprocess.run(
        [sys.executable, "-m", "kubetune_workloads", "dataprep", "--spec", str(spec_file)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    result = StepResult.model_validate_json(log.read_text())
    assert result.ok and result.metrics["records"] == 3 and result.metrics["validation"] == 0
    assert (tmp_path / "out" / MANIFEST_FILE).is_file()
