"""`kubetune plan` prints what the operator would create, for review in a GitOps pull request."""

from __future__ import annotations

from pathlib import Path

import yaml
from kubetune.cli import app
from typer.testing import CliRunner

REPO = Path(__file__).resolve().parents[2]
runner = CliRunner()


def test_plan_prints_every_child_of_the_quickstart_with_the_given_images() -> None:
    result = runner.invoke(
        app,
        [
            "plan",
            "-f",
            str(REPO / "examples" / "quickstart"),
            "--image-cpu",
            "registry.example/kubetune-cpu:1.2",
            "--artifact-store",
            "s3://team-artifacts",
        ],
    )
    assert result.exit_code == 0, result.output
    objects = [o for o in yaml.safe_load_all(result.stdout) if o]
    jobs = [o for o in objects if o["kind"] == "Job"]
    assert sorted(j["metadata"]["labels"]["kubetune.dev/name"] for j in jobs) == [
        "base-model",
        "general-corpus",
        "support-assistant",
        "support-assistant-eval",
        "support-assistant-nf4",
        "support-tickets",
    ]
    images = {j["spec"]["template"]["spec"]["containers"][0]["image"] for j in jobs}
    assert images == {"registry.example/kubetune-cpu:1.2"}  # no GPUs asked for: CPU image
    configmaps = {o["metadata"]["name"]: o for o in objects if o["kind"] == "ConfigMap"}
    for job in jobs:
        spec_cm = f"{job['metadata']['name']}-spec"
        assert (
            '"outputUri": "s3://team-artifacts/default/' in configmaps[spec_cm]["data"]["spec.json"]
        )


def test_plan_refuses_invalid_manifests_and_names_the_field(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "apiVersion: kubetune.dev/v1alpha1\nkind: Dataset\nmetadata: {name: d}\n"
        "spec: {sources: [{uri: 'ftp://x/y'}]}\n"
    )
    result = runner.invoke(app, ["plan", "-f", str(bad)])
    assert result.exit_code == 1
    assert "spec.sources[0].uri" in result.output or "spec.sources.0.uri" in result.output


def test_status_without_a_local_run_says_so(tmp_path: Path) -> None:
    result = runner.invoke(app, ["status", "--workdir", str(tmp_path)])
    assert result.exit_code == 1
    assert "no local run" in result.output
