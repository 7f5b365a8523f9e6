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
from kubetune.validation import validate_against_crd, validate_document
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
    assert f"  - {path}: " in result.output, result.output
    assert "is invalid:" in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize("fixture", FIXTURES, ids=lambda p: p.stem)
def test_typed_api_names_the_field(fixture: Path) -> None:
    doc = yaml.safe_load(fixture.read_text(encoding="utf-8"))
    errors = [str(e) for e in validate_document(doc)]
    assert _errors_at(errors, _header(fixture, "path")), errors


@pytest.mark.parametrize("fixture", FIXTURES, ids=lambda p: p.stem)
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
