"""Layering: the import-linter contracts in pyproject.toml hold, and the API and planners
import neither kopf nor the kubernetes client nor torch."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
HEAVY = ("kopf", "kubernetes", "torch", "transformers", "aiohttp")


def _toml_value(value: object) -> str:
    return json.dumps(value)  # strings, lists and booleans are spelled the same in TOML


def test_import_linter_contracts_are_kept(tmp_path: Path) -> None:
    lint = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    if lint is None:
        pytest.skip("import-linter is not installed (pip install -e .[dev])")
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]
    assert config["contracts"], "no import-linter contracts in pyproject.toml"
    # Forbidden external modules (kopf, torch) need include_external_packages.
    config.setdefault("include_external_packages", True)
    lines = ["[tool.importlinter]"]
    lines += [f"{k} = {_toml_value(v)}" for k, v in config.items() if k != "contracts"]
    for contract in config["contracts"]:
        lines.append("[[tool.importlinter.contracts]]")
        lines += [f"{k} = {_toml_value(v)}" for k, v in contract.items()]
    path = tmp_path / "importlinter.toml"
    path.write_text("\n".join(lines) + "\n")
    done = subprocess.run(
        [lint, "--config", str(path), "--no-cache"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout


def test_api_and_planners_do_not_import_heavy_dependencies() -> None:
    code = (
        "import json, sys\n"
        "import kubetune.api, kubetune.api.steps, kubetune.plan\n"
        f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []


def test_cli_help_does_not_import_heavy_dependencies() -> None:
    code = (
        "import json, sys\n"
        "from kubetune import cli\n"
        f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []
