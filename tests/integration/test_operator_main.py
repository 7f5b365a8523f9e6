"""`kubetune operator` configuration (flags and KUBETUNE_* environment) and the metrics
exporter as a running operator serves it."""

from __future__ import annotations

import socket
import urllib.request
from pathlib import Path

import pytest
from kubetune.controllers import main
from kubetune.plan.world import OperatorConfig

from tests.emulator import Emulator, Kubelet
from tests.integration.conftest import (
    DATASETS,
    operator_registry,
    ready_dataset,
    run_operator_registry,
)


def test_environment_sets_images_store_and_namespaces() -> None:
    env = {
        "KUBETUNE_CPU_IMAGE": "cpu:1",
        "KUBETUNE_CUDA_IMAGE": "cuda:1",
        "KUBETUNE_ARTIFACT_STORE": "s3://models",
        "KUBETUNE_NAMESPACES": "team-a, team-b,",
    }
    config = main.config_from_env(OperatorConfig(), env)
    assert (config.cpu_image, config.cuda_image, config.artifact_store) == (
        "cpu:1",
        "cuda:1",
        "s3://models",
    )
    assert main.namespaces_from_env(env) == ["team-a", "team-b"]
    assert main.namespaces_from_env({}) is None
    assert main.config_from_env(OperatorConfig(), {}) == OperatorConfig()


def test_an_unknown_log_format_is_refused_before_starting() -> None:
    with pytest.raises(ValueError, match="log format"):
        main.run_operator(log_format="xml", env={})


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_the_operator_serves_prometheus_metrics(
    emu: Emulator, kubelet: Kubelet, tmp_path: Path
) -> None:
    port = _free_port()
    registry = operator_registry(emu, tmp_path, metrics_port=port)
    with run_operator_registry(emu, registry):
        ready_dataset(emu, kubelet)
        assert emu.get(DATASETS, "default", "tickets") is not None
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read()
    exposition = text.decode()
    for series in (
        'kubetune_reconcile_total{kind="Dataset"}',
        'kubetune_reconcile_duration_seconds_bucket{kind="Dataset"',
        'kubetune_resources{kind="Dataset",phase="Ready"}',
        "kubetune_job_duration_seconds",
    ):
        assert series in exposition
