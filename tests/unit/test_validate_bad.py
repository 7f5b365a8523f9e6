"""Broken manifests: `kubetune validate` names the field, and the CRD rejects what the API would.

Each fixture under tests/fixtures/bad/ says in its header which field is wrong (``# path:``)
and whether kube-apiserver with the generated CRD rejects it (``# apiserver: reject``) or
cannot (``# apiserver: accept (why)``), in which case only `kubetune validate` and the
operator catch it.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from kubetune.cli import app
from kubetune.schema.validation import (
    ManifestError,
    load_manifests,
    load_yaml_documents,
    validate_against_crd,
    validate_document,
)
from typer.testing import CliRunner

BAD = Path(__file__).resolve().parents[1] / "fixtures" / "bad"
FIXTURES = sorted(BAD.glob("*.yaml"))


def _header(path: Path, key: str) -> str:
    match = re.search(rf"^# {key}: (.+)$", path.read_text(encoding="utf-8"), re.MULTILINE)
    assert match, f"{path.name} lacks a '# {key}:' header"
    return match.group(1).strip()


def _errors_at(errors: list[str], path: str) -> list[str]:
    return [e for e in errors if e.startswith(f"{path}: ")]


def test_there_are_enough_broken_manifests() -> None:
    assert len(FIXTURES) >= 30


@pytest.mark.parametrize("fixture", FIXTURES, ids=lambda p: p.stem)
def test_kubetune_validate_rejects_with_the_field_path(fixture: Path) -> None:
    path = _header(fixture, "path")
    result = CliRunner().invoke(app, ["validate", "-f", str(fixture)])
    assert result.exit_code == 1, result.output
    assert f"  - {path}: " in result.output or (
        _load_stage(fixture) and f"{path}" in result.output
    ), result.output
    assert "is invalid:" in result.output or _load_stage(fixture)
    assert "Traceback" not in result.output


def _load_stage(path: Path) -> bool:
    """Fixtures whose file cannot even be read as manifests (``# stage: load``)."""
    return "\n# stage: load\n" in path.read_text(encoding="utf-8")


@pytest.mark.parametrize("fixture", [f for f in FIXTURES if _load_stage(f)], ids=lambda p: p.stem)
def test_unreadable_documents_are_refused_when_loading(fixture: Path) -> None:
    with pytest.raises(ManifestError) as info:
        load_manifests([fixture])
    assert _header(fixture, "path") in str(info.value)


def _yaml_stage(path: Path) -> bool:
    """Fixtures the API server's JSON decoder refuses before any schema (``# stage: yaml``)."""
    return "\n# stage: yaml\n" in path.read_text(encoding="utf-8")


@pytest.mark.parametrize(
    "fixture", [f for f in FIXTURES if not _load_stage(f)], ids=lambda p: p.stem
)
def test_typed_api_names_the_field(fixture: Path) -> None:
    (doc,) = load_yaml_documents(fixture.read_text(encoding="utf-8"))
    errors = [str(e) for e in validate_document(doc)]
    assert _errors_at(errors, _header(fixture, "path")), errors


@pytest.mark.parametrize(
    "fixture",
    [f for f in FIXTURES if not (_load_stage(f) or _yaml_stage(f))],
    ids=lambda p: p.stem,
)
def test_crd_schema_and_cel_rules_reject_what_the_api_server_would(fixture: Path) -> None:
    doc = yaml.safe_load(fixture.read_text(encoding="utf-8"))
    errors = validate_against_crd(doc)
    if _header(fixture, "apiserver").startswith("accept"):
        assert errors == [], "the CRD now catches this: mark the fixture 'apiserver: reject'"
    else:
        assert _errors_at(errors, _header(fixture, "path")), errors


def test_errors_read_like_kube_apiserver() -> None:
    result = CliRunner().invoke(app, ["validate", "-f", str(BAD / "lora-without-r.yaml")])
    assert 'FinetuneJob.kubetune.dev "bad-job" is invalid: spec.lora.r: Required value' in (
        result.output
    )


def test_every_broken_manifest_in_one_run_fails_each() -> None:
    result = CliRunner().invoke(app, ["validate", "-f", str(BAD)])
    assert result.exit_code == 1
    assert result.output.count("✗") == len(FIXTURES)


def test_a_directory_reports_every_file_even_after_unreadable_ones(tmp_path: Path) -> None:
    (tmp_path / "a-list.yaml").write_text("- just\n- a list\n")
    (tmp_path / "b-broken.yaml").write_text("spec: [unclosed\n")
    (tmp_path / "c-job.yaml").write_text((BAD / "lora-without-r.yaml").read_text())
    (tmp_path / "d-dup.yaml").write_text((BAD / "duplicate-key.yaml").read_text())
    result = CliRunner().invoke(app, ["validate", "-f", str(tmp_path)])
    assert result.exit_code == 1
    for name in ("a-list", "b-broken", "c-job", "d-dup"):
        assert f"{name}.yaml" in result.output, result.output
    assert "spec.lora.r: Required value" in result.output
    assert "line 21; first at line 19" in result.output
    assert "Traceback" not in result.output


def test_plan_and_run_print_errors_not_tracebacks(tmp_path: Path) -> None:
    for command in ("plan", "run"):
        for fixture in ("duplicate-key.yaml", "not-a-mapping.yaml", "integer-overflow.yaml"):
            args = [command, "-f", str(BAD / fixture)]
            if command == "run":
                args += ["--workdir", str(tmp_path / "w")]
            result = CliRunner().invoke(app, args)
            assert result.exit_code == 1, (command, fixture, result.output)
            assert "Traceback" not in result.output, (command, fixture, result.output)
            assert result.exception is None or isinstance(result.exception, SystemExit)


def test_plan_names_a_generate_name_resource(tmp_path: Path) -> None:
    manifest = (BAD / "lora-without-r.yaml").read_text()
    manifest = manifest.replace("  name: bad-job", "  generateName: tuned-")
    manifest = manifest.replace("    alpha: 16\n", "    r: 8\n")
    manifest = manifest.replace("    name: corpus\n", "    uri: pvc://data/corpus\n")
    path = tmp_path / "gen.yaml"
    path.write_text(manifest)
    assert CliRunner().invoke(app, ["validate", "-f", str(path)]).exit_code == 0
    result = CliRunner().invoke(app, ["plan", "-f", str(path)])
    assert result.exit_code == 0, result.output
    jobs = [d for d in yaml.safe_load_all(result.output) if d and d["kind"] == "Job"]
    assert jobs and jobs[0]["metadata"]["name"].startswith("tuned-")


GOOD = BAD.parent / "good"


def test_valid_pod_settings_are_accepted_and_make_jobs_the_api_server_accepts() -> None:
    """No false positives: every field at the edge of Kubernetes' rules is accepted, and the
    Job the operator builds from it passes the Kubernetes OpenAPI schema (strict)."""
    import kubernetes_validate

    result = CliRunner().invoke(app, ["validate", "-f", str(GOOD)])
    assert result.exit_code == 0, result.output
    assert validate_against_crd(load_manifests([GOOD])[0].doc) == []
    planned = CliRunner().invoke(app, ["plan", "-f", str(GOOD)])
    assert planned.exit_code == 0, planned.output
    objects = [d for d in yaml.safe_load_all(planned.output) if d]
    assert {o["kind"] for o in objects} >= {"Job", "ConfigMap"}
    for obj in objects:
        kubernetes_validate.validate(obj, "1.30", strict=True)
    (job,) = [o for o in objects if o["kind"] == "Job"]
    pod = job["spec"]["template"]["spec"]
    assert pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert pod["priorityClassName"] == "ml.high-priority"


def test_json_manifests_are_strict_too(tmp_path: Path) -> None:
    path = tmp_path / "dup.json"
    path.write_text(
        '{"apiVersion": "kubetune.dev/v1alpha1", "kind": "FinetuneJob",\n'
        ' "metadata": {"name": "a",\n  "name": "b"}, "spec": {}}\n'
    )
    result = CliRunner().invoke(app, ["validate", "-f", str(path)])
    assert result.exit_code == 1
    assert "  - metadata.name: Duplicate value:" in result.output
    assert "line 3; first at line 2" in result.output
