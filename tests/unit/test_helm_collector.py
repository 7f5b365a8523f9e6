"""The chart's feedback collector (templates/collector.yaml): Deployment, Service, Ingress,
probes, metrics, and the values it refuses."""

from __future__ import annotations

import json
from typing import Any

import kubernetes_validate
import pytest

from tests.unit import test_helm_chart as chart

ENABLED = (
    "--set=collector.enabled=true",
    "--set=collector.store=pvc://feedback/loops",
    "--set=collector.tokensSecret=collector-tokens",
)


@pytest.fixture(scope="module")
def helm_bin() -> str:
    path, reason = chart._helm_or_reason()
    if path is None:
        pytest.skip(f"helm unavailable: {reason}")
    return path


def collector_objects(helm_bin: str, *args: str) -> list[dict[str, Any]]:
    objects = chart.render(helm_bin, *ENABLED, *args)
    return [o for o in objects if o["metadata"]["name"].endswith("-collector")]


def test_disabled_by_default(helm_bin: str) -> None:
    assert not [o for o in chart.render(helm_bin) if "collector" in o["metadata"]["name"]]


def test_deployment_service_ingress_and_monitor(helm_bin: str) -> None:
    objects = collector_objects(
        helm_bin,
        "--set=collector.ingress.enabled=true",
        "--set=collector.ingress.host=feedback.example.com",
        "--set=serviceMonitor.enabled=true",
        "--set=collector.loops={default/support}",
    )
    kinds = sorted(o["kind"] for o in objects)
    assert kinds == ["Deployment", "Ingress", "Service", "ServiceMonitor"]
    for obj in objects:
        if obj["kind"] != "ServiceMonitor":
            kubernetes_validate.validate(obj, chart.K8S_VERSION, strict=True)
        assert obj["metadata"]["labels"]["app.kubernetes.io/component"] == "collector"
    deployment = chart.one(objects, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["command"] == ["kubetune", "collector"]
    args = container["args"]
    assert "--store=pvc://feedback/loops" in args and "--loop=default/support" in args
    assert "--tokens=/etc/kubetune/tokens/tokens.yaml" in args and "--workers=1" in args
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert mounts["store"] == "/mnt/pvc/feedback"
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["store"]["persistentVolumeClaim"]["claimName"] == "feedback"
    assert volumes["tokens"]["secret"]["secretName"] == "collector-tokens"
    assert pod["automountServiceAccountToken"] is False
    ingress = chart.one(objects, "Ingress")
    (path,) = ingress["spec"]["rules"][0]["http"]["paths"]
    assert path["path"] == "/v1/feedback"  # /metrics is not exposed
    monitor = chart.one(objects, "ServiceMonitor")
    assert monitor["spec"]["endpoints"][0]["path"] == "/metrics"
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector == chart.one(objects, "Service")["spec"]["selector"]
    # the operator's Service and ServiceMonitor do not select the collector
    operator_service = next(
        o
        for o in chart.render(helm_bin, *ENABLED)
        if o["kind"] == "Service" and not o["metadata"]["name"].endswith("-collector")
    )
    assert operator_service["spec"]["selector"]["app.kubernetes.io/component"] == "operator"


def test_s3_store_mounts_no_claim_and_takes_one_replica(helm_bin: str) -> None:
    objects = collector_objects(helm_bin, "--set=collector.store=s3://bucket/feedback")
    pod = chart.one(objects, "Deployment")["spec"]["template"]["spec"]
    assert "store" not in {v["name"] for v in pod["volumes"]}
    error = chart.render_error(
        helm_bin, *ENABLED, "--set=collector.store=s3://b/f", "--set=collector.replicas=2"
    )
    assert "needs a pvc:// store" in error
    # several workers write through one committer: an s3:// store takes them
    objects = collector_objects(
        helm_bin, "--set=collector.store=s3://b/f", "--set=collector.workers=2"
    )
    (container,) = chart.one(objects, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert "--workers=2" in container["args"]
    assert "workers" in chart.render_error(helm_bin, *ENABLED, "--set=collector.workers=0")


def test_a_file_store_is_refused_in_the_cluster(helm_bin: str) -> None:
    """The collector's root filesystem is read-only: only pvc:// and s3:// can be written."""
    for store in ("file:///data/feedback", "file://feedback"):
        error = chart.render_error(helm_bin, *ENABLED, f"--set=collector.store={store}")
        assert f'collector.store "{store}"' in error and "read-only" in error, error
        assert "use pvc://CLAIM/path" in error and "s3://bucket/prefix" in error, error
    for store in ("pvc://feedback/loops", "s3://bucket/feedback"):
        assert collector_objects(helm_bin, f"--set=collector.store={store}")


def test_required_values(helm_bin: str) -> None:
    assert "collector.store is required" in chart.render_error(
        helm_bin, "--set=collector.enabled=true", "--set=collector.tokensSecret=t"
    )
    assert "collector.tokensSecret is required" in chart.render_error(
        helm_bin, "--set=collector.enabled=true", "--set=collector.store=pvc://c/p"
    )
    assert "collector" in chart.render_error(helm_bin, *ENABLED, "--set=collector.bogus=1")


def test_lint_strict_with_the_collector(helm_bin: str) -> None:
    done = chart._run_helm(
        helm_bin,
        "lint",
        "--strict",
        str(chart.CHART),
        *ENABLED,
        "--set=collector.ingress.enabled=true",
        "--set=serviceMonitor.enabled=true",
        "--set=dashboard.enabled=true",
    )
    assert done.returncode == 0, done.stdout + done.stderr


# chart value -> the CollectorConfig field it is passed to (as its `kubetune collector` flag)
LIMITS = {
    "maxBodyBytes": "max_body_bytes",
    "maxPendingBytes": "max_pending_bytes",
    "segmentBytes": "segment_bytes",
    "segmentSeconds": "segment_seconds",
    "retentionHours": "retention_seconds",
}


def test_the_charts_limits_have_the_collectors_minimums(helm_bin: str) -> None:
    """A value the collector would refuse at start (a crash-looping pod) fails the install."""
    from kubetune.collector.config import MINIMUMS

    schema = json.loads((chart.CHART / "values.schema.json").read_text())
    limits = schema["properties"]["collector"]["properties"]
    for value, field in LIMITS.items():
        option, minimum, _unit = MINIMUMS[field]
        assert limits[value]["minimum"] == minimum, (value, option)
        error = chart.render_error(helm_bin, *ENABLED, f"--set=collector.{value}={minimum / 2}")
        assert value in error, error
