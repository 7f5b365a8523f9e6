"""A Dataset's version hashes the normalised spec, each input's content and the code, not the
folder the corpus lies in: the same corpus copied elsewhere keeps its version, while a changed
byte, another input order or another spec field gives a new one. The manifest lists each input
by URI with its checksum."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from kubetune.api.contract import PVC_ROOT_ENV
from kubetune.api.steps import DataprepStepSpec, StepResult
from kubetune_workloads.dataprep import run
from kubetune_workloads.manifest import read_manifest


def write_corpus(root: Path) -> Path:
    """Two source files in a folder and a decontamination prompt set beside them."""
    (root / "data").mkdir(parents=True)
    for part in ("one", "two"):
        rows = [
            {"text": f"Ticket {part} {i}: the Nimbus sync client stops with code {i * 13} today."}
            for i in range(30)
        ]
        (root / "data" / f"{part}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (root / "prompts.jsonl").write_text(json.dumps({"prompt": "how do I reset my password"}) + "\n")
    return root


def step(root: Path, out: Path, sources: list[str], **spec: Any) -> DataprepStepSpec:
    """A step reading ``sources`` (paths relative to ``root``) as absolute file:// URIs, as
    `kubetune run` resolves a manifest's relative ones."""
    spec.setdefault("cleaning", {"decontaminate": [f"file://{root / 'prompts.jsonl'}"]})
    return DataprepStepSpec.model_validate(
        {
            "producer": {"kind": "Dataset", "name": "ds", "namespace": "default", "runId": "g1"},
            "outputUri": f"file://{out}",
            "spec": {"sources": [{"uri": f"file://{root / s}"} for s in sources], **spec},
        }
    )


def version(result: StepResult) -> str:
    assert result.ok, result.message
    assert result.details is not None
    return str(result.details["version"])


def test_the_same_corpus_in_another_folder_keeps_its_version(tmp_path: Path) -> None:
    original = write_corpus(tmp_path / "src")
    a, b = tmp_path / "a" / "checkout", tmp_path / "b" / "elsewhere" / "checkout"
    shutil.copytree(original, a)
    shutil.copytree(original, b)
    sources = ["data", "data/*.jsonl", "data/one.jsonl"]
    in_a = run(step(a, tmp_path / "out-a", sources))
    in_b = run(step(b, tmp_path / "out-b", sources))
    assert version(in_a) == version(in_b)

    manifest = read_manifest(tmp_path / "out-b")
    assert manifest is not None
    uris = [i.uri for i in manifest.inputs]
    assert uris == [
        f"file://{b}/data/one.jsonl",
        f"file://{b}/data/two.jsonl",
        f"file://{b}/data/one.jsonl",
        f"file://{b}/data/two.jsonl",
        f"file://{b}/data/one.jsonl",
        f"file://{b}/prompts.jsonl",
    ]
    assert all(str(i.content_hash).startswith("sha256:") for i in manifest.inputs)


def test_content_order_and_spec_changes_still_give_a_new_version(tmp_path: Path) -> None:
    root = write_corpus(tmp_path / "corpus")
    base = version(run(step(root, tmp_path / "base", ["data/one.jsonl", "data/two.jsonl"])))

    swapped = run(step(root, tmp_path / "swapped", ["data/two.jsonl", "data/one.jsonl"]))
    other_spec = run(
        step(root, tmp_path / "spec", ["data/one.jsonl", "data/two.jsonl"], split={"seed": 7})
    )
    prompts = root / "prompts.jsonl"
    prompts.write_text(prompts.read_text().replace("password", "passcode"))
    new_prompts = run(step(root, tmp_path / "prompts", ["data/one.jsonl", "data/two.jsonl"]))
    # one byte of one record, in a file whose name and size stay the same
    data = root / "data" / "two.jsonl"
    data.write_text(data.read_text().replace("code 13 ", "code 14 "))
    new_content = run(step(root, tmp_path / "content", ["data/one.jsonl", "data/two.jsonl"]))

    versions = [base, *(version(r) for r in (swapped, other_spec, new_prompts, new_content))]
    assert len(set(versions)) == len(versions), versions


def test_a_claim_mounted_elsewhere_keeps_the_version_and_inputs_name_the_claim(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    versions = []
    for mount in ("mnt-a", "mnt-b"):
        write_corpus(tmp_path / mount / "claim" / "tickets")
        monkeypatch.setenv(PVC_ROOT_ENV, str(tmp_path / mount))
        out = tmp_path / f"out-{mount}"
        spec = DataprepStepSpec.model_validate(
            {
                "producer": {
                    "kind": "Dataset",
                    "name": "ds",
                    "namespace": "default",
                    "runId": "g1",
                },
                "outputUri": f"file://{out}",
                "spec": {"sources": [{"uri": "pvc://claim/tickets/data/*.jsonl"}]},
            }
        )
        versions.append(version(run(spec)))
        manifest = read_manifest(out)
        assert manifest is not None
        assert [i.uri for i in manifest.inputs] == [
            "pvc://claim/tickets/data/one.jsonl",
            "pvc://claim/tickets/data/two.jsonl",
        ]
    assert versions[0] == versions[1]
