"""``helm template`` of the chart as a platform team renders it -- default values, and
``replicas: 2`` with leader election -- checked across objects and against the images."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.install.images import ImageCatalog
from tests.install.platform import RELEASE, RELEASE_NS, ha_values, one, render_chart


def subjects(objects: list[dict[str, Any]], kind: str) -> list[tuple[str, str, str]]:
    return [
        (o["roleRef"]["name"], s.get("name", ""), s.get("namespace", ""))
        for o in objects
        if o["kind"] == kind
        for s in o.get("subjects") or []
    ]


def test_default_values_render_a_consistent_install(tmp_path: Path) -> None:
    objects = render_chart(workdir=tmp_path)
    crds = {o["metadata"]["name"] for o in objects if o["kind"] == "CustomResourceDefinition"}
    assert {f"{p}.kubetune.dev" for p in ("datasets", "finetunejobs", "compressions")} <= crds
    deployment = one(objects, "Deployment", RELEASE)
    assert deployment["metadata"]["namespace"] == RELEASE_NS
    pod = deployment["spec"]["template"]["spec"]
    container = next(c for c in pod["containers"] if c["name"] == "operator")
    # no command: the image's ENTRYPOINT runs, and it must be `kubetune operator`
    assert "command" not in container
    image = ImageCatalog().resolve(container["image"])
    assert image.dockerfile.name == "operator.Dockerfile"
    assert image.entrypoint == ("kubetune", "operator")
    # the probes use a port the container declares; /tmp is writable on a read-only root
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    for probe in ("livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"]["port"] in ports
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert any(m["mountPath"] == "/tmp" for m in container["volumeMounts"])
    # the pod's service account exists and is bound to the operator's cluster role
    account = pod["serviceAccountName"]
    assert one(objects, "ServiceAccount", account)["metadata"]["namespace"] == RELEASE_NS
    assert (RELEASE, account, RELEASE_NS) in subjects(objects, "ClusterRoleBinding")


def test_two_replicas_elect_a_leader_on_a_lease(tmp_path: Path) -> None:
    objects = render_chart(ha_values(2), workdir=tmp_path)
    deployment = one(objects, "Deployment", RELEASE)
    assert deployment["spec"]["replicas"] == 2
    pod = deployment["spec"]["template"]["spec"]
    container = next(c for c in pod["containers"] if c["name"] == "operator")
    assert "--leader-elect" in container["args"]
    assert f"--leader-election-namespace={RELEASE_NS}" in container["args"]
    env = {e["name"]: e for e in container.get("env") or []}
    assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    # the service account may read and write Leases in the release namespace
    roles = [o for o in objects if o["kind"] == "Role" and o["metadata"]["namespace"] == RELEASE_NS]
    lease_roles = {
        r["metadata"]["name"]
        for r in roles
        for rule in r["rules"]
        if "leases" in rule.get("resources", []) and {"get", "update"} <= set(rule.get("verbs", []))
    }
    bound = {
        name for name, sa, _ in subjects(objects, "RoleBinding") if sa == pod["serviceAccountName"]
    }
    assert lease_roles & bound, (lease_roles, bound)
