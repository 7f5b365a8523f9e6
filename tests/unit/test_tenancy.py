"""Tenancy flags of `kubetune operator`: image allowlist, workload ServiceAccount and
imagePullSecrets per namespace, default requests, the metrics bind address."""

from __future__ import annotations

from pathlib import Path

import pytest
from kubetune.cli import app, tenancy_config
from kubetune.plan.world import OperatorConfig
from typer.testing import CliRunner


def test_flags_build_the_operator_config() -> None:
    config = tenancy_config(
        OperatorConfig(cpu_image="r.example/cpu:1", cuda_image="r.example/cuda:1"),
        allowed_images=["r.example/team/*"],
        service_accounts=["kubetune-workload", "ml=ml-irsa"],
        pull_secrets=["regcred", "ml=ml-registry"],
        default_requests=["finetune-gpu=8,64Gi"],
        metrics_bind_address="127.0.0.1",
    )
    assert config.image_allowed("r.example/team/custom:3")
    assert config.image_allowed("r.example/cuda:1")
    assert not config.image_allowed("docker.io/library/python:3")
    assert config.service_account_for("ml") == "ml-irsa"
    assert config.service_account_for("other") == "kubetune-workload"
    assert config.image_pull_secrets_for("ml") == ("regcred", "ml-registry")
    assert config.image_pull_secrets_for("other") == ("regcred",)
    assert config.requests_for("finetune", 1) == ("8", "64Gi")
    assert config.requests_for("finetune", 0) == ("2", "8Gi")
    assert config.metrics_bind_address == "127.0.0.1"


def test_default_allowlist_is_the_configured_images() -> None:
    config = OperatorConfig()
    assert config.image_allowed(config.cpu_image) and config.image_allowed(config.cuda_image)
    assert not config.image_allowed("ghcr.io/kubetune/workloads-cuda:0.0.1-evil")


def test_bad_flags_are_refused() -> None:
    with pytest.raises(ValueError, match="STEP=CPU,MEMORY"):
        tenancy_config(
            OperatorConfig(),
            allowed_images=[],
            service_accounts=[],
            pull_secrets=[],
            default_requests=["finetune=4"],
        )


def test_operator_help_lists_the_tenancy_flags() -> None:
    result = CliRunner().invoke(app, ["operator", "--help"], env={"COLUMNS": "200"})
    for flag in (
        "--allowed-image",
        "--workload-service-account",
        "--image-pull-secret",
        "--default-requests",
        "--metrics-bind-address",
    ):
        assert flag in result.output


def test_kubetune_plan_refuses_an_image_outside_the_allowlist(tmp_path: Path) -> None:
    manifest = tmp_path / "job.yaml"
    manifest.write_text(
        "apiVersion: kubetune.dev/v1alpha1\nkind: FinetuneJob\nmetadata: {name: miner}\n"
        "spec:\n  model: {base: {uri: hf://org/model}}\n  dataset: {uri: pvc://d/x}\n"
        "  lora: {r: 8}\n  image: docker.io/evil/miner:latest\n"
    )
    refused = CliRunner().invoke(app, ["plan", "-f", str(manifest)])
    assert refused.exit_code == 1
    assert "FinetuneJob/miner" in refused.output and "not allowed" in refused.output
    allowed = CliRunner().invoke(
        app, ["plan", "-f", str(manifest), "--allowed-image", "docker.io/evil/*"]
    )
    assert allowed.exit_code == 0, allowed.output
    assert "image: docker.io/evil/miner:latest" in allowed.output
