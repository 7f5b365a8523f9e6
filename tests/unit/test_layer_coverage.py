"""Every module of the `kubetune` package sits in a layer import-linter checks: no root module
(besides the CLI at the top) escapes the contracts in pyproject.toml."""

from __future__ import annotations

import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "operator" / "kubetune"


def layered_packages() -> set[str]:
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]
    layers = next(c["layers"] for c in config["contracts"] if c["type"] == "layers")
    return {name.strip() for layer in layers for name in layer.split("|")}


def test_every_top_level_module_of_kubetune_is_in_a_layer() -> None:
    layered = layered_packages()
    children = {
        f"kubetune.{p.stem}"
        for p in PACKAGE.iterdir()
        if (p.suffix == ".py" and p.name != "__init__.py") or (p / "__init__.py").is_file()
    }
    assert {"kubetune.cli", "kubetune.api", "kubetune.schema"} <= children
    assert children - layered == set(), "modules outside import-linter's layers"
    assert layered - children == set(), "layers naming modules that do not exist"
