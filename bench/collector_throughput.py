"""Feedback collector throughput: sustained records/s and p99 commit latency vs raw appends.

Starts the real ``kubetune collector`` (``--workers 2`` by default: a supervisor and two
worker processes on one port) on 127.0.0.1 with a file:// store in a temporary directory,
then ``--clients`` concurrent keep-alive HTTP/1.1 connections post ``--batches`` JSONL
batches of ``--batch`` records (~200 B each) for one loop. A request's latency is from sending
it to its 200, which the collector sends only once the records are committed (appended to the
open segment and fdatasync'ed, the segment's committed-length marker raised; concurrent
requests share a commit). Every record is distinct (no duplicates), so every one is written.
The load generator is a minimal HTTP client (it parses the status line, headers and body of
each answer and requires a 200): an aiohttp client would spend about as much CPU per request
as the collector, on the same 2 cores.

The baseline is the physical limit of the same store: appending the same batches (the same
JSONL lines the collector writes) to one file in the same directory, with a flush and an fsync
after each batch, in this process with no HTTP, parsing or validation. The disk's flush time
varies from minute to minute on a shared machine, so it is measured just before and just after
the collector's run, and the faster of the two is the baseline.

Also printed (not the baseline, not the ratio): the collector's store path alone,
``LoopStore.commit`` of the same batches in this process (id filter, lock, append, fdatasync),
to tell the store's cost from the HTTP/JSON side's.

The last line is one JSON object: ``value`` = collector records/s, ``baseline`` = raw
records/s, ``ratio`` = value / baseline (goal 0.5 at p99 <= 50 ms for 100-record batches),
``p99_ms``, ``store_only_ratio`` (store path alone / raw), ``workers`` and the load average.

    python bench/collector_throughput.py [--batches 400] [--batch 100] [--clients 8]
        [--workers 2] [--quick]
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
import urllib.parse
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
    path = directory / "feedback.jsonl"
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


class _Connection:
    """One keep-alive HTTP/1.1 connection that POSTs prepared requests (a lean load generator:
    aiohttp's client costs about as much CPU per request as the collector, on the same 2
    cores)."""

    def __init__(self, host: str, port: int, path: str) -> None:
        self.host, self.port, self.path = host, port, path
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, body: bytes) -> int:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        head = (
            f"POST {self.path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            f"Authorization: Bearer {TOKEN}\r\nContent-Type: application/x-ndjson\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        self.writer.write(head + body)
        status_line = await self.reader.readline()
        length = 0
        while (header := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = header.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        await self.reader.readexactly(length)
        return int(status_line.split()[1])

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            await self.writer.wait_closed()


async def post_all(
    connections: list[_Connection], payloads: list[bytes]
) -> tuple[float, list[float]]:
    """Post every payload over the keep-alive ``connections``; (seconds, latencies)."""
    queue = list(reversed(payloads))
    latencies: list[float] = []

    async def client(connection: _Connection) -> None:
        while queue:
            body = queue.pop()
            t0 = time.perf_counter()
            status = await connection.post(body)
            if status != 200:
                raise RuntimeError(f"collector answered {status}")
            latencies.append(time.perf_counter() - t0)

    start = time.perf_counter()
    await asyncio.gather(*(client(c) for c in connections))
    return time.perf_counter() - start, latencies


async def interleaved(
    url: str, args: argparse.Namespace, payloads: list[bytes], lines: list[bytes], work: Path
) -> tuple[list[float], list[float], float, list[float]]:
    """Rounds of: raw appends of a share of the batches, then the collector posting the same
    share; one more raw run at the end. The disk's flush time varies from minute to minute on
    a shared machine: interleaved, both sides meet the same disk.

    Returns (raw records/s of each raw run, their seconds, collector seconds, latencies).
    """
    parsed = urllib.parse.urlsplit(url)
    connections = [
        _Connection(parsed.hostname or "127.0.0.1", parsed.port or 80, parsed.path)
        for _ in range(args.clients)
    ]
    shares = [range(r, len(lines), args.rounds) for r in range(args.rounds)]
    raw_rates: list[float] = []
    raw_seconds: list[float] = []
    elapsed, latencies = 0.0, []
    try:
        await connections[0].post(payloads[0])  # warm-up: the loop's store opens
        for number, share in enumerate([*shares, shares[0]]):
            rate, _ = raw_baseline(work / f"raw-{number}", [lines[i] for i in share], args.batch)
            raw_rates.append(rate)
            raw_seconds.append(len(share) * args.batch / rate)
            if number < len(shares):
                seconds, waited = await post_all(connections, [payloads[i + 1] for i in share])
                elapsed += seconds
                latencies += waited
    finally:
        await asyncio.gather(*(c.close() for c in connections))
    return raw_rates, raw_seconds, elapsed, latencies


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--batches", type=int, default=400)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2, help="the collector's --workers")
    parser.add_argument("--rounds", type=int, default=4, help="raw/collector alternations")
    parser.add_argument("--segment-bytes", type=int, default=1 << 20, help="the collector's")
    parser.add_argument(
        "--quick", action="store_true", help="100 batches: under a minute, same output shape"
    )
    args = parser.parse_args()
    if args.quick:
        args.batches = min(args.batches, 100)
        args.rounds = min(args.rounds, 2)
    return args


def wait_healthy(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("the collector did not start") from None
            time.sleep(0.1)


def run_collector(
    work: Path, args: argparse.Namespace, payloads: list[bytes], lines: list[bytes]
) -> tuple[list[float], list[float], float, list[float]]:
    """Start ``kubetune collector``, run the interleaved rounds, stop it (see interleaved)."""
    tokens = work / "tokens.yaml"
    tokens.write_text(f"- name: bench\n  token: {TOKEN}\n  loops: ['*/*']\n")
    port = _port()
    command = [
        *(sys.executable, "-m", "kubetune.cli", "collector"),
        *("--store", f"file://{work / 'store'}", "--tokens", str(tokens), "--port", str(port)),
        *("--segment-bytes", str(args.segment_bytes), "--workers", str(args.workers)),
    ]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_healthy(port, proc)
        url = f"http://127.0.0.1:{port}/v1/feedback/default/bench"
        measured = asyncio.run(interleaved(url, args, payloads, lines, work))
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    committed = sum(len(p.read_bytes().splitlines()) for p in (work / "store").rglob("*.jsonl"))
    expected = len(payloads) * args.batch
    assert committed == expected, (committed, expected)
    return measured


def main() -> None:
    args = parse_args()
    payloads = bodies(args.batches + 1, args.batch)
    lines = stored_lines(stored_batches(args.batches, args.batch))
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="collector-bench-") as tmp:
        work = Path(tmp)
        raw_rates, raw_seconds, elapsed, latencies = run_collector(work, args, payloads, lines)
        store_rps = store_only(work, stored_batches(args.batches, args.batch), args.batch)
    rps = args.batches * args.batch / elapsed
    p99 = percentile(latencies, 0.99)
    raw_total = sum(r * t for r, t in zip(raw_rates, raw_seconds, strict=True))
    raw_rps = raw_total / sum(raw_seconds)  # all raw runs together: records / seconds
    fastest = max(raw_rates)
    print(
        f"collector ({args.workers} workers): {rps:,.0f} records/s, "
        f"p50 {percentile(latencies, 0.5) * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms per "
        f"{args.batch}-record batch, {args.clients} clients, {args.batches} batches"
    )
    print(
        f"raw append+flush+fsync: {raw_rps:,.0f} records/s over {len(raw_rates)} runs "
        f"interleaved with {args.rounds} collector rounds (runs: "
        + ", ".join(f"{r:,.0f}" for r in raw_rates)
        + f"; against the fastest alone: ratio {rps / fastest:.2f})"
    )
    print(
        f"store path alone (LoopStore.commit, no HTTP): {store_rps:,.0f} records/s, "
        f"{store_rps / raw_rps:.2f} of raw"
    )
    print(f"p99_commit_ms={p99 * 1000:.1f} (goal <= 50); load average at start {load:.2f}")
    result = {
        "bench": "collector_throughput",
        "metric": "records_per_s",
        "value": round(rps, 1),
        "baseline": round(raw_rps, 1),
        "ratio": round(rps / raw_rps, 4),
        "goal": 0.5,
        "unit": "records/s",
        "p99_ms": round(p99 * 1000, 1),
        "ratio_vs_fastest_raw_run": round(rps / fastest, 4),
        "store_only_ratio": round(store_rps / raw_rps, 4),
        "workers": args.workers,
        "load_average": round(load, 2),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
