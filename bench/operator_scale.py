"""Operator scale: how fast the real operator turns many FinetuneJobs into Jobs.

The API emulator (tests/emulator) runs in this process; the operator runs in a child process
(``kopf run`` with kubetune's registry, logged in to the emulator), so its peak RSS is its own.
For each size N, one Ready Dataset is stored, the operator is started and has listed everything,
then N FinetuneJobs referencing it are created as fast as the API accepts them. Measured:

* throughput: N / (time from the first create to the last of the N Jobs created), in CR/s;
* create->Job latency per resource (the emulator stamps each create), p50 and p99;
* the operator's peak RSS.

The small run is the baseline: ``ratio`` = large-run throughput / small-run throughput (1.0
means the operator scales linearly; lower means per-CR cost grows with the number of CRs).
Usage: ``python bench/operator_scale.py [--quick]`` (100 vs 1000; quick: 50 vs 200).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

NS = "default"
DATASET_STATUS = {
    "phase": "Ready",
    "observedGeneration": 1,
    "runId": "g1",
    "outputUri": "s3://bench/tickets",
    "message": "completed",
    "conditions": [
        {
            "type": "Ready",
            "status": "True",
            "reason": "Completed",
            "message": "completed",
            "observedGeneration": 1,
            "lastTransitionTime": "2025-01-01T00:00:00Z",
        }
    ],
}


DATASET = {
    "apiVersion": "kubetune.dev/v1alpha1",
    "kind": "Dataset",
    "metadata": {"name": "tickets", "namespace": NS},
    "spec": {"sources": [{"uri": "s3://raw/t.jsonl", "format": "jsonl"}], "schema": "instruction"},
}


def _finetune(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "kubetune.dev/v1alpha1",
        "kind": "FinetuneJob",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "model": {"base": {"uri": "hf://org/tiny-llama"}},
            "dataset": {"name": "tickets"},
            "method": "lora",
            "lora": {"r": 8, "alpha": 16},
            "hyperparameters": {"maxSteps": 10},
            "resources": {"gpus": 1},
        },
    }


def serve_operator(url: str) -> None:
    """Child-process mode: run the operator against the emulator at ``url``."""
    import logging

    import kopf
    from kubetune.controllers.registry import build_registry
    from kubetune.plan.world import OperatorConfig

    logging.basicConfig(level=logging.WARNING)
    registry = build_registry(OperatorConfig())

    @kopf.on.login(registry=registry)
    def login(**_: Any) -> kopf.ConnectionInfo:
        return kopf.ConnectionInfo(server=url, insecure=True, default_namespace=NS)

    kopf.configure(verbose=False)
    kopf.run(registry=registry, standalone=True, namespaces=[NS])


class PeakRss:
    """Polls a process's RSS; keeps the peak."""

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.peak = 0

    def sample(self) -> None:
        with contextlib.suppress(psutil.Error):
            self.peak = max(self.peak, self.process.memory_info().rss)


def _seen_jobs(emu: Any, seen: dict[str, float]) -> None:
    """Stamp the Jobs that appeared since the last look (names only, no copies)."""
    names = emu.call(lambda s: [k[2] for k in s.store if k[0] == ("batch", "jobs")])
    now = time.perf_counter()
    for name in names:
        seen.setdefault(name, now)


def measure(count: int, timeout: float) -> dict[str, float]:
    """One run with ``count`` FinetuneJobs; returns throughput, latencies and peak RSS."""
    from tests.emulator import start_emulator
    from tests.integration.conftest import load_crds

    created: dict[str, float] = {}
    jobs: dict[str, float] = {}
    with start_emulator(load_crds()) as emu:
        emu.create("datasets.kubetune.dev", DATASET)
        emu.patch_status("datasets.kubetune.dev", NS, "tickets", DATASET_STATUS)
        child = subprocess.Popen(
            [sys.executable, __file__, "--serve-operator", emu.url],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        rss = PeakRss(child.pid)
        try:
            deadline = time.monotonic() + 60
            while (
                not (emu.get("datasets.kubetune.dev", NS, "tickets") or {})
                .get("metadata", {})
                .get("finalizers")
            ):
                rss.sample()
                if time.monotonic() > deadline or child.poll() is not None:
                    raise RuntimeError("the operator did not start")
                time.sleep(0.05)
            for i in range(count):
                name = f"ft-{i:05d}"
                emu.create("finetunejobs.kubetune.dev", _finetune(name))
                created[name] = time.perf_counter()
                if i % 20 == 0:
                    _seen_jobs(emu, jobs)
            deadline = time.monotonic() + timeout
            while len(jobs) < count:
                _seen_jobs(emu, jobs)
                rss.sample()
                if time.monotonic() > deadline:
                    raise RuntimeError(f"only {len(jobs)} of {count} Jobs after {timeout}s")
                time.sleep(0.01)
            rss.sample()
        finally:
            child.terminate()
            try:
                child.wait(timeout=20)
            except subprocess.TimeoutExpired:
                child.kill()
    latencies = sorted(jobs[f"{n}-finetune-g1"] - t for n, t in created.items())
    elapsed = max(jobs.values()) - min(created.values())
    return {
        "count": count,
        "throughput": count / elapsed,
        "p50_ms": 1000 * statistics.median(latencies),
        "p99_ms": 1000 * latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))],
        "peak_rss_mib": rss.peak / 2**20,
        "seconds": elapsed,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="50 vs 200 CRs (< 1 minute)")
    parser.add_argument("--serve-operator", metavar="URL", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_operator:
        serve_operator(args.serve_operator)
        return
    small, large = (50, 200) if args.quick else (100, 1000)
    baseline = measure(small, timeout=120)
    result = measure(large, timeout=600)
    for run in (baseline, result):
        print(
            f"{run['count']:>5} FinetuneJobs: {run['throughput']:.1f} CR/s to all Jobs "
            f"({run['seconds']:.1f}s), create->Job p50 {run['p50_ms']:.0f} ms, "
            f"p99 {run['p99_ms']:.0f} ms, operator peak RSS {run['peak_rss_mib']:.0f} MiB"
        )
    print(
        json.dumps(
            {
                "bench": "operator_scale",
                "metric": f"CR/s to all Jobs created, {large} FinetuneJobs",
                "value": round(result["throughput"], 2),
                "baseline": round(baseline["throughput"], 2),
                "ratio": round(result["throughput"] / baseline["throughput"], 3),
                "goal": 0.8,
                "unit": "CR/s",
                "details": {"small": baseline, "large": result},
            }
        )
    )


if __name__ == "__main__":
    main()
