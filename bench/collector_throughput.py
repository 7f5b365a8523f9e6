"""Feedback collector throughput: sustained records/s and p99 commit latency vs raw appends.

Starts the real ``kubetune collector`` on 127.0.0.1 with a file:// store in a temporary
directory, then ``--clients`` concurrent aiohttp clients post ``--batches`` JSONL batches of
``--batch`` records (~200 B each) for one loop. A request's latency is from sending it to its
200, which the collector sends only once the records are committed (appended to the open
segment and fdatasync'ed; concurrent requests share a commit). Every record is distinct (no
duplicates), so every one is written.

The baseline is the physical limit of the same store: appending the same batches (the same
JSONL lines the collector writes) to one file in the same directory, with a flush and an fsync
after each batch, in this process with no HTTP, parsing or validation.

Also printed (not the baseline, not the ratio): the collector's store path alone,
``LoopStore.commit`` of the same batches in this process (id filter, lock, append, fdatasync),
to tell the store's cost from the HTTP/JSON side's.

The last line is one JSON object: ``value`` = collector records/s, ``baseline`` = raw
records/s, ``ratio`` = value / baseline (goal 0.5 at p99 <= 50 ms for 100-record batches),
``p99_ms`` and ``store_only_ratio`` (store path alone / raw).

    python bench/collector_throughput.py [--batches 400] [--batch 100] [--clients 8]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

TOKEN = "bench-token-0123456789"


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def records(batch_index: int, size: int) -> list[dict[str, Any]]:
    return [
        {
            "id": f"b{batch_index}-{i}",
            "prompt": f"How do I reset the password of account {batch_index * size + i}?",
            "response": "Open Settings, then Account, then Reset password, and follow the mail.",
            "rating": (i % 5) + 1,
            "model_version": "c3",
        }
        for i in range(size)
    ]


def bodies(batches: int, size: int) -> list[bytes]:
    return [
        "".join(json.dumps(r) + "\n" for r in records(b, size)).encode() for b in range(batches)
    ]


def stored_batches(batches: int, size: int) -> list[list[tuple[str, bytes]]]:
    """What the collector writes for each batch: (id, JSONL line) pairs, for the baselines."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "operator"))
    from kubetune.collector.records import Valid, encode_line, validate

    out = []
    for b in range(batches):
        pairs = []
        for i, row in enumerate(records(b, size)):
            valid = validate(i, row, "2026-01-01T00:00:00.000Z")
            assert isinstance(valid, Valid)
            pairs.append((valid.id, encode_line(valid.line)))
        out.append(pairs)
    return out


def stored_lines(batches: list[list[tuple[str, bytes]]]) -> list[bytes]:
    """The bytes of each batch: the same JSONL lines the collector writes."""
    return [b"".join(line for _, line in pairs) for pairs in batches]


def store_only(directory: Path, batches: list[list[tuple[str, bytes]]], size: int) -> float:
    """records/s of the collector's store path alone: ``LoopStore.commit`` of each batch."""
    from kubetune.collector.store import LocalBackend, LoopStore

    store = LoopStore(LocalBackend(directory / "store-only"), "bench")
    store.load()
    start = time.perf_counter()
    for pairs in batches:
        store.commit(pairs)
    elapsed = time.perf_counter() - start
    store.close()
    return len(batches) * size / elapsed


def raw_baseline(directory: Path, batches: list[bytes], size: int) -> tuple[float, float]:
    """(records/s, p99 s) of appending each batch to one file with flush + fsync."""
    path = directory / "raw" / "feedback.jsonl"
    path.parent.mkdir(parents=True)
    latencies = []
    start = time.perf_counter()
    with path.open("ab") as handle:
        for data in batches:
            t0 = time.perf_counter()
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
            latencies.append(time.perf_counter() - t0)
    elapsed = time.perf_counter() - start
    return len(batches) * size / elapsed, percentile(latencies, 0.99)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def post_all(url: str, payloads: list[bytes], clients: int) -> tuple[float, list[float]]:
    import aiohttp

    queue = list(reversed(payloads))
    latencies: list[float] = []
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/x-ndjson"}

    async def client(session: aiohttp.ClientSession) -> None:
        while queue:
            body = queue.pop()
            t0 = time.perf_counter()
            async with session.post(url, data=body, headers=headers) as response:
                await response.read()
                if response.status != 200:
                    raise RuntimeError(f"collector answered {response.status}")
            latencies.append(time.perf_counter() - t0)

    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(connector=connector) as session:
        # warm-up: the loop's store is opened on its first request
        async with session.post(url, data=payloads[0], headers=headers) as response:
            await response.read()
        queue.pop()
        start = time.perf_counter()
        await asyncio.gather(*(client(session) for _ in range(clients)))
        elapsed = time.perf_counter() - start
    return elapsed, latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batches", type=int, default=400)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--segment-bytes", type=int, default=1 << 20, help="the collector's")
    parser.add_argument(
        "--quick", action="store_true", help="100 batches: under a minute, same output shape"
    )
    args = parser.parse_args()
    if args.quick:
        args.batches = min(args.batches, 100)

    payloads = bodies(args.batches + 1, args.batch)
    with tempfile.TemporaryDirectory(prefix="collector-bench-") as tmp:
        work = Path(tmp)
        tokens = work / "tokens.yaml"
        tokens.write_text(f"- name: bench\n  token: {TOKEN}\n  loops: ['*/*']\n")
        port = _port()
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "kubetune.cli",
                "collector",
                "--store",
                f"file://{work / 'store'}",
                "--tokens",
                str(tokens),
                "--port",
                str(port),
                "--segment-bytes",
                str(args.segment_bytes),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1).close()
                    break
                except OSError:
                    if time.monotonic() > deadline or proc.poll() is not None:
                        raise RuntimeError("the collector did not start") from None
                    time.sleep(0.1)
            url = f"http://127.0.0.1:{port}/v1/feedback/default/bench"
            elapsed, latencies = asyncio.run(post_all(url, payloads, args.clients))
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(10)
        committed = sum(len(p.read_bytes().splitlines()) for p in (work / "store").rglob("*.jsonl"))
        expected = (args.batches + 1) * args.batch
        assert committed == expected, (committed, expected)
        rps = args.batches * args.batch / elapsed
        p99 = percentile(latencies, 0.99)
        batches = stored_batches(args.batches, args.batch)
        raw_rps, raw_p99 = raw_baseline(work, stored_lines(batches), args.batch)
        store_rps = store_only(work, batches, args.batch)

    print(
        f"collector: {rps:,.0f} records/s, p50 {percentile(latencies, 0.5) * 1000:.1f} ms, "
        f"p99 {p99 * 1000:.1f} ms per {args.batch}-record batch, {args.clients} clients, "
        f"{args.batches} batches"
    )
    print(f"raw append+flush+fsync: {raw_rps:,.0f} records/s, p99 {raw_p99 * 1000:.2f} ms")
    print(
        f"store path alone (LoopStore.commit, no HTTP): {store_rps:,.0f} records/s, "
        f"{store_rps / raw_rps:.2f} of raw"
    )
    print(f"p99_commit_ms={p99 * 1000:.1f} (goal <= 50)")
    print(
        json.dumps(
            {
                "bench": "collector_throughput",
                "metric": "records_per_s",
                "value": round(rps, 1),
                "baseline": round(raw_rps, 1),
                "ratio": round(rps / raw_rps, 4),
                "goal": 0.5,
                "unit": "records/s",
                "p99_ms": round(p99 * 1000, 1),
                "store_only_ratio": round(store_rps / raw_rps, 4),
            }
        )
    )


if __name__ == "__main__":
    main()
