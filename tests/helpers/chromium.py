"""Headless Chromium for the HTML report tests: find it, screenshot a page, no console errors."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--enable-logging=stderr",
    "--v=0",
]


def find_chromium() -> str:
    """Debian's chromium; the test is skipped without it, except in CI where it must be."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None and os.environ.get("CI") != "true":
        pytest.skip("chromium is not installed (CI installs Debian's chromium)")
    assert found, "chromium must be installed in CI"
    return found


def screenshot(page: Path, tmp_path: Path, size: tuple[int, int]) -> Path:
    """A PNG of ``page`` at ``size`` (width, height); asserts the page logged nothing."""
    png = tmp_path / "report.png"
    proc = subprocess.run(
        [
            find_chromium(),
            *CHROMIUM_FLAGS,
            f"--user-data-dir={tmp_path / 'profile'}",
            f"--screenshot={png}",
            f"--window-size={size[0]},{size[1]}",
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert png.is_file(), proc.stderr[-3000:]
    console = [
        line
        for line in proc.stderr.splitlines()
        if "CONSOLE" in line or "Uncaught" in line or "console" in line.lower()
    ]
    assert console == [], console
    return png
