"""The GPU benches execute end to end on CPU with tiny shapes (``--device cpu``): same
last-line JSON and the JSON + markdown files a GPU suite run keeps. Numbers are not checked
(speed goals live in the benches, measured on a GPU)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("peft")

from test_finetune_support import subprocess_env

ROOT = Path(__file__).resolve().parents[2]
KEYS = {"bench", "metric", "value", "baseline", "ratio", "goal", "unit"}


def _run_bench(name: str, out: Path, *extra: str) -> dict[str, object]:
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / f"{name}.py"),
            "--device",
            "cpu",
            "--out",
            str(out),
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=subprocess_env(),
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert set(summary) >= KEYS and summary["bench"] == name and summary["device"] == "cpu"
    assert json.loads((out / f"{name}.json").read_text()) == summary
    assert "| --- |" in (out / f"{name}.md").read_text()
    assert not list(out.glob("*.partial"))
    return dict(summary)


def test_lora_mfu_bench_runs_on_cpu(tmp_path: Path) -> None:
    summary = _run_bench(
        "gpu_lora_mfu",
        tmp_path,
        "--workloads",
        "cpt,packed",
        "--packed-variants",
        "auto:auto,eager:none",
    )
    rows = summary["shapes"]
    assert [(r["workload"], r["variant"]) for r in rows] == [  # type: ignore[union-attr]
        ("cpt", "auto:auto"),
        ("packed", "eager:none"),  # settings without Liger run first (it patches classes)
        ("packed", "auto:auto"),
    ]
    for row in rows:  # type: ignore[union-attr]
        assert row["tokens_per_second"] > 0 and row["baseline_tokens_per_second"] > 0
    attention = [r["performance"]["attention"] for r in rows]  # type: ignore[union-attr]
    assert attention == ["sdpa", "eager", "sdpa"]
    assert summary["value"] == rows[0]["tokens_per_second"]  # type: ignore[index]


def test_qlora_memory_bench_runs_on_cpu(tmp_path: Path) -> None:
    summary = _run_bench("gpu_qlora_memory", tmp_path)
    result = summary["result"]
    assert result["gradient_checkpointing"] is True  # type: ignore[index]
    assert result["peak_bytes"] is None  # type: ignore[index]  # no allocator statistics on CPU


def test_gpu_suite_runs_its_parts_on_cpu(tmp_path: Path) -> None:
    """The prepared suite script (imports check, bounded benches, log) on tiny CPU shapes,
    with its profile part (gpu_profile.py)."""
    env = subprocess_env(
        SUITE_DEVICE="cpu",
        SUITE_SITE="none",
        PATH=f"{Path(sys.executable).parent}:{subprocess_env()['PATH']}",
    )
    done = subprocess.run(
        ["bash", str(ROOT / "bench" / "gpu_suite.sh"), "run", str(tmp_path), "profile"],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stdout[-3000:]
    log = (tmp_path / "suite.log").read_text()
    assert "kubetune_workloads.finetune" in log and "=== gpu_profile exit 0" in log
    summary = json.loads((tmp_path / "gpu_profile.json").read_text())
    assert set(summary) >= KEYS and summary["bench"] == "gpu_profile"
    for name in ("kubetune", "trainer"):
        row = summary["per_step"][name]
        assert row["matmul"] > 0 and row["wall (CUDA events)"] >= row["kernels (sum)"] > 0
    assert "host syncs per step" in (tmp_path / "gpu_profile.md").read_text()
    assert not (tmp_path / "gpu_lora_mfu.json").exists()  # only the part asked for
