"""The `kubetune` command: version, crds generate|check, validate, docs check."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml
from kubetune import __version__
from kubetune.cli import app
from typer.testing import CliRunner

REPO = Path(__file__).resolve().parents[2]
runner = CliRunner()
VALID = {
    "apiVersion": "kubetune.dev/v1alpha1",
    "kind": "FinetuneJob",
    "metadata": {"name": "assistant"},
    "spec": {
        "model": {"base": {"uri": "hf://org/model"}},
        "dataset": {"name": "corpus"},
        "method": "qlora",
        "lora": {"r": 16},
        "quantization": {"bits": 4},
        "hyperparameters": {"epochs": 2},
    },
}


def test_version() -> None:
    result = runner.invoke(app, ["version"])
    assert result.exit_code == 0
    assert __version__ in result.output and "kubetune.dev/v1alpha1" in result.output


def test_console_script_entry_point_runs() -> None:
    done = subprocess.run(
        [sys.executable, "-c", "from kubetune.cli import main; main()", "version"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0 and __version__ in done.stdout


def test_crds_check_passes_on_the_repository() -> None:
    result = runner.invoke(app, ["crds", "check", "--dir", str(REPO / "crds")])
    assert result.exit_code == 0, result.output


def test_crds_generate_then_check(tmp_path: Path) -> None:
    missing = runner.invoke(app, ["crds", "check", "--dir", str(tmp_path)])
    assert missing.exit_code == 1 and "missing" in missing.output
    generated = runner.invoke(app, ["crds", "generate", "--dir", str(tmp_path)])
    assert generated.exit_code == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        p.name for p in (REPO / "crds").glob("*.yaml")
    )
    assert runner.invoke(app, ["crds", "check", "--dir", str(tmp_path)]).exit_code == 0
    stray = tmp_path / "pipelines.kubetune.dev.yaml"
    stray.write_text("{}")
    result = runner.invoke(app, ["crds", "check", "--dir", str(tmp_path)])
    assert result.exit_code == 1 and "pipelines.kubetune.dev.yaml" in result.output


def test_validate_ok_reports_each_resource(tmp_path: Path) -> None:
    manifest = tmp_path / "job.yaml"
    other = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "prompts"}}
    manifest.write_text(yaml.safe_dump_all([VALID, other]))
    result = runner.invoke(app, ["validate", "-f", str(manifest)])
    assert result.exit_code == 0, result.output
    assert "FinetuneJob/assistant valid" in result.output
    assert "skipped v1 ConfigMap" in result.output


def test_validate_several_files_fails_when_one_is_invalid(tmp_path: Path) -> None:
    good, bad = tmp_path / "good.yaml", tmp_path / "bad.json"
    good.write_text(yaml.safe_dump(VALID))
    broken = {**VALID, "spec": {**VALID["spec"], "quantization": {"bits": 8}}}
    bad.write_text(json.dumps(broken))
    result = runner.invoke(app, ["validate", "-f", str(good), "-f", str(bad)])
    assert result.exit_code == 1
    assert "FinetuneJob/assistant valid" in result.output
    assert "spec.quantization.bits: Invalid value" in result.output
    assert "qlora requires 4-bit quantization" in result.output
    assert "1 of 2 resources invalid" in result.output


def test_validate_reports_unreadable_input_without_a_traceback(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("apiVersion: kubetune.dev/v1alpha1\nkind: [unclosed\n")
    result = runner.invoke(app, ["validate", "-f", str(broken)])
    assert result.exit_code == 1 and "not valid YAML" in result.output
    missing = runner.invoke(app, ["validate", "-f", str(tmp_path / "nope.yaml")])
    assert missing.exit_code == 1 and "no such file" in missing.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_validate_without_kubetune_resources_fails(tmp_path: Path) -> None:
    (tmp_path / "cm.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n")
    result = runner.invoke(app, ["validate", "-f", str(tmp_path)])
    assert result.exit_code == 1 and "no kubetune resources" in result.output


def test_validate_examples_directory() -> None:
    result = runner.invoke(app, ["validate", "-f", str(REPO / "examples")])
    assert result.exit_code == 0, result.output


def test_api_reference_is_fresh() -> None:
    result = runner.invoke(app, ["docs", "check", "--file", str(REPO / "docs" / "api.md")])
    assert result.exit_code == 0, result.output
    text = (REPO / "docs" / "api.md").read_text(encoding="utf-8")
    assert "`spec.lora.r` *(required)*" in text
    assert "qlora requires 4-bit quantization" in text


def test_validate_reads_exponent_numbers_like_kubectl(tmp_path: Path) -> None:
    manifest = tmp_path / "job.yaml"
    text = yaml.safe_dump(VALID).replace("epochs: 2", "epochs: 2\n    learningRate: 2e-4")
    manifest.write_text(text)
    result = runner.invoke(app, ["validate", "-f", str(manifest)])
    assert "learningRate: 2e-4" in text
    assert result.exit_code == 0, result.output
