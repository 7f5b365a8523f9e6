"""`kubetune run` exit codes a CI job can act on: a failed gate is not a success."""

from __future__ import annotations

import json
from pathlib import Path

from test_local_run import kubetune, status_of, write

from tests.helpers.tiny import save_tiny_llama


def test_a_failed_gate_makes_kubetune_run_exit_3(tmp_path: Path) -> None:
    model = save_tiny_llama(tmp_path / "model")
    manifests = write(
        tmp_path / "m" / "eval.yaml",
        f"""
apiVersion: kubetune.dev/v1alpha1
kind: Evaluation
metadata: {{name: gated}}
spec:
  candidate: {{uri: "file://{model}"}}
  prompts:
    inline:
      - {{id: a, prompt: "The cat sat on the", expected: "mat"}}
      - {{id: b, prompt: "Rain fell over the", expected: "quiet town"}}
  metrics: [{{name: exactMatch}}]
  generation: {{maxNewTokens: 4}}
  gates: [{{metric: exactMatch, min: 0.99}}]
  bootstrapSamples: 10
""",
    )
    workdir = tmp_path / "work"
    result = kubetune("run", "-f", str(manifests), "--workdir", str(workdir), timeout=300)
    assert result.returncode == 3, result.stdout + result.stderr
    assert "gate failed: Evaluation/gated: exactMatch>=0.99" in result.stderr
    status = status_of(workdir, "Evaluation/gated")
    assert status["phase"] == "Succeeded" and status["passed"] is False


def test_lineage_lists_every_input_with_version_and_hash_back_to_raw_data(
    tmp_path: Path,
) -> None:
    from test_local_run import _tiny_pipeline

    manifests = _tiny_pipeline(tmp_path, steps=4, every=1000)
    cases = tmp_path / "m" / "cases.jsonl"
    cases.write_text(
        '{"id": "c1", "prompt": "How do I reset password number 1?", "expected": "Open"}\n'
    )
    write(
        tmp_path / "m" / "eval.yaml",
        """
apiVersion: kubetune.dev/v1alpha1
kind: Evaluation
metadata: {name: tune-eval}
spec:
  candidate: {kind: FinetuneJob, name: tune}
  prompts: {uri: "file://cases.jsonl", inline: [{id: i1, prompt: "Hello", expected: "x"}]}
  metrics: [{name: exactMatch}]
  generation: {maxNewTokens: 4}
  bootstrapSamples: 10
""",
    )
    workdir = tmp_path / "work"
    result = kubetune("run", "-f", str(manifests.parent), "--workdir", str(workdir), timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    out = kubetune("lineage", "Evaluation/tune-eval", "--workdir", str(workdir))
    assert out.returncode == 0, out.stderr
    text = out.stdout
    dataset = status_of(workdir, "Dataset/tickets")
    version = json.loads(
        (Path(dataset["outputUri"].removeprefix("file://")) / "kubetune-manifest.json").read_text()
    )["extra"]["version"]
    lines = text.splitlines()
    assert lines[0] == "Evaluation/tune-eval"
    candidate = next(line for line in lines if "<- candidate:" in line)
    assert "sha256:" in candidate
    trained = next(line for line in lines if "<- dataset:" in line)
    assert f"version {version}" in trained and "sha256:" in trained  # FinetuneJob's input
    prompts = next(line for line in lines if "<- prompts:" in line and "cases.jsonl" in line)
    assert "sha256:" in prompts
    assert any("<- prompt-cases:" in line and "sha256:" in line for line in lines)
    raw = next(line for line in lines if "tickets.jsonl" in line and "[raw data]" in line)
    assert "sha256" in raw or len(raw.split()) > 3
    missing = kubetune("lineage", "Evaluation/nope", "--workdir", str(workdir))
    assert missing.returncode == 1 and "no Evaluation/nope" in missing.stderr
