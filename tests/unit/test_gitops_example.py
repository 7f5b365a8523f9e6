"""The GitOps example renders with kustomize into manifests kubetune validates and plans."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from kubetune.cli import app
from typer.testing import CliRunner

REPO = Path(__file__).resolve().parents[2]


def test_kustomized_quickstart_is_valid_and_plans_gpu_jobs_on_pvc_data(tmp_path: Path) -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl (with its built-in kustomize) is not installed")
    rendered = subprocess.run(
        [kubectl, "kustomize", str(REPO / "examples" / "gitops")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    manifests = tmp_path / "rendered.yaml"
    manifests.write_text(rendered)
    runner = CliRunner()
    assert runner.invoke(app, ["validate", "-f", str(manifests)]).exit_code == 0
    result = runner.invoke(app, ["plan", "-f", str(manifests)])
    assert result.exit_code == 0, result.output
    objects = [o for o in yaml.safe_load_all(result.stdout) if o]
    jobs = {o["metadata"]["labels"]["kubetune.dev/name"]: o for o in objects if o["kind"] == "Job"}
    assert len(jobs) == 6
    assert {o["metadata"]["namespace"] for o in objects} == {"ml-support"}
    tuned = jobs["support-assistant"]
    assert tuned["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "team-ml"
    container = tuned["spec"]["template"]["spec"]["containers"][0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    corpus = jobs["general-corpus"]["spec"]["template"]["spec"]
    assert any(
        v.get("persistentVolumeClaim", {}).get("claimName") == "corpora" for v in corpus["volumes"]
    )
