"""Feedback collector throughput: sustained records/s and p99 commit latency vs raw appends.

Starts the real ``kubetune collector`` (``--workers 2`` by default: two HTTP processes and
their committer, the store's one writer; see docs/feedback.md) on 127.0.0.1 with a file://
store in a temporary directory, then keeps ``--clients`` (16) keep-alive HTTP/1.1 connections
posting JSONL batches of ``--batch`` records (~200 B each, every record distinct, so every one
is written) for one loop during ``--rounds`` rounds of ``--seconds``. A request's latency is
from sending it to its 200, which the collector sends only once the records are committed
(appended to the open segment and fdatasync'ed, the segment's committed-length marker raised;
concurrent requests share a commit).

The load generator is ``wrk`` (Debian package ``wrk``: C, epoll, a Lua script that builds each
batch), so that the two cores go to the collector rather than to the client, as when clients
run on other machines; ``--client python`` (the fallback when wrk is not installed) is a lean
asyncio client in this process, which takes about a third of a core at this rate.

The baseline is the physical limit of the same store: appending the same batches (the JSONL
lines the collector committed in its warm-up round, in 100-line batches) to one file in the
same directory, with a flush and an fsync after each batch, in this process with no HTTP,
parsing or validation. The disk's flush time varies from minute to minute on a shared
machine, so raw runs alternate with the collector's rounds (one before each round and one
after the last) and all raw runs together are the baseline. Each raw run is ``--raw-batches``
(2,000) batches, ~0.5-1 s, so that the baseline is measured over seconds, as the collector is,
not over a few lucky (or unlucky) tenths of one: measured, 25 alternations of runs of 200 and
2,000 batches gave the same mean (340,000 and 337,000 records/s) with less spread per run
(coefficient of variation 0.20 and 0.17); the default was 200, whose 5 runs were ~0.35 s.

The last line is one JSON object: ``value`` = collector records/s over all rounds,
``baseline`` = raw records/s, ``ratio`` = value / baseline (goal 0.5 at p99 <= 50 ms for
100-record batches), ``p99_ms`` (the worst round's), the collector's CPU per request
(all its processes) and the client's, ``workers``, ``clients`` and the load average.

    python bench/collector_throughput.py [--seconds 3] [--rounds 4] [--clients 16]
        [--batch 100] [--workers 2] [--client auto|wrk|python] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import psutil

TOKEN = "bench-token-0123456789"
PATH = "/v1/feedback/default/bench"

# One record: the shape an application posts (the stored shape: id first, then prompt...).
RECORD = (
    '{{"id": "{tag}-b{batch}-{i}", "prompt": "How do I reset the password of account {n}?", '
    '"response": "Open Settings, then Account, then Reset password, and follow the mail.", '
    '"rating": {rating}, "model_version": "c3"}}\n'
)

LUA = """
local tag, counter = "w0", 0
local threads = {}
function setup(thread)
  thread:set("tag", "w" .. #threads .. "r" .. ROUND)
  table.insert(threads, thread)
end
function init(args)
  tag = wrk.thread:get("tag")
  wrk.method = "POST"
  wrk.headers["Authorization"] = "Bearer TOKEN"
  wrk.headers["Content-Type"] = "application/x-ndjson"
end
local fmt = 'FORMAT'
function request()
  counter = counter + 1
  local parts = {}
  for i = 0, BATCH - 1 do
    parts[i + 1] = string.format(fmt, tag, counter, i, counter * BATCH + i, (i % 5) + 1)
  end
  return wrk.format(nil, nil, nil, table.concat(parts))
end
function done(summary, latency, requests)
  io.write(string.format("RESULT %d %d %d %.3f %.3f %.6f\\n", summary.requests,
    summary.errors.status, summary.errors.connect + summary.errors.read + summary.errors.write
    + summary.errors.timeout, latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    summary.duration / 1e6))
end
"""


@dataclass
class Round:
    """One collector round: 200s, seconds, p50 and p99 (ms), client CPU seconds."""

    posts: int
    seconds: float
    p50_ms: float
    p99_ms: float
    client_cpu: float


def batch_body(tag: str, batch: int, size: int) -> bytes:
    return "".join(
        RECORD.format(tag=tag, batch=batch, i=i, n=batch * size + i, rating=(i % 5) + 1)
        for i in range(size)
    ).encode()


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def raw_append(path: Path, batches: list[bytes], size: int) -> tuple[float, float]:
    """(records/s, seconds) of appending each batch to one new file with flush + fsync (the
    file is removed after)."""
    start = time.perf_counter()
    with path.open("ab") as handle:
        for data in batches:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
    elapsed = time.perf_counter() - start
    path.unlink()
    return len(batches) * size / elapsed, elapsed


def committed_lines(store: Path) -> list[bytes]:
    """Every line of the store's segments, in file order (what the collector committed)."""
    lines: list[bytes] = []
    for segment in sorted(store.rglob("*.jsonl")):
        lines += segment.read_bytes().splitlines(keepends=True)
    return lines


def wrk_round(url: str, args: argparse.Namespace, number: int, work: Path) -> Round:
    fmt = RECORD.format(tag="%s", batch="%d", i="%d", n="%d", rating="%d").replace("\n", "\\n")
    script = work / f"round-{number}.lua"
    script.write_text(
        LUA.replace("FORMAT", fmt.replace("'", "\\'"))
        .replace("TOKEN", TOKEN)
        .replace("BATCH", str(args.batch))
        .replace("ROUND", str(number))
    )
    threads = 2 if args.clients >= 2 else 1
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(
        [
            *("wrk", "-t", str(threads), "-c", str(args.clients), "-d", f"{args.seconds}s"),
            *("--timeout", "10s", "-s", str(script), url),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    found = re.search(r"^RESULT (\d+) (\d+) (\d+) (\S+) (\S+) (\S+)$", done.stdout, re.M)
    if found is None:
        raise RuntimeError(f"wrk printed no result:\n{done.stdout}\n{done.stderr}")
    posts, bad_status, socket_errors = (int(found.group(i)) for i in (1, 2, 3))
    if bad_status or socket_errors:
        raise RuntimeError(f"{bad_status} non-2xx answers, {socket_errors} socket errors")
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return Round(posts, float(found.group(6)), float(found.group(4)), float(found.group(5)), cpu)


class _Connection:
    """One keep-alive HTTP/1.1 connection that POSTs (the lean load generator of --client
    python: aiohttp's client costs about as much CPU per request as the collector)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, body: bytes) -> int:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        assert self.reader is not None
        head = (
            f"POST {PATH} HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\n"
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


async def _python_round(port: int, args: argparse.Namespace, number: int) -> Round:
    connections = [_Connection(port) for _ in range(args.clients)]
    latencies: list[float] = []
    cpu0, start = time.process_time(), time.perf_counter()
    deadline = start + args.seconds

    async def client(index: int, connection: _Connection) -> None:
        batch = 0
        while time.perf_counter() < deadline:
            batch += 1
            body = batch_body(f"p{index}r{number}", batch, args.batch)
            t0 = time.perf_counter()
            status = await connection.post(body)
            if status != 200:
                raise RuntimeError(f"collector answered {status}")
            latencies.append(time.perf_counter() - t0)

    try:
        await asyncio.gather(*(client(i, c) for i, c in enumerate(connections)))
    finally:
        await asyncio.gather(*(c.close() for c in connections))
    seconds = time.perf_counter() - start
    return Round(
        len(latencies),
        seconds,
        percentile(latencies, 0.5) * 1000,
        percentile(latencies, 0.99) * 1000,
        time.process_time() - cpu0,
    )


def load_round(port: int, args: argparse.Namespace, number: int, work: Path) -> Round:
    if args.client == "wrk":
        return wrk_round(f"http://127.0.0.1:{port}{PATH}", args, number, work)
    return asyncio.run(_python_round(port, args, number))


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


def cpu_seconds(proc: subprocess.Popen[bytes]) -> float:
    """CPU seconds of the collector: its supervisor and every worker."""
    parent = psutil.Process(proc.pid)
    total = 0.0
    for process in [parent, *parent.children(recursive=True)]:
        times = process.cpu_times()
        total += times.user + times.system
    return total


@dataclass
class Measured:
    raw_batches: int  # per raw run: --raw-batches, or fewer when the warm-up made fewer
    raw_rates: list[float]
    raw_seconds: list[float]
    rounds: list[Round]
    collector_cpu: float


def run_rounds(
    work: Path, args: argparse.Namespace, port: int, proc: subprocess.Popen[bytes]
) -> Measured:
    """A warm-up round (its committed lines are the raw runs' batches), then raw run and
    collector round alternately, one more raw run at the end."""
    store = work / "store"
    load_round(port, args, 0, work)
    lines = committed_lines(store)
    batches = [b"".join(lines[i : i + args.batch]) for i in range(0, len(lines), args.batch)]
    batches = batches[: args.raw_batches]
    raw_rates: list[float] = []
    raw_seconds: list[float] = []
    rounds: list[Round] = []
    cpu = 0.0
    for number in range(1, args.rounds + 2):
        rate, seconds = raw_append(work / f"raw-{number}.jsonl", batches, args.batch)
        raw_rates.append(rate)
        raw_seconds.append(seconds)
        if number <= args.rounds:
            cpu0 = cpu_seconds(proc)
            rounds.append(load_round(port, args, number, work))
            cpu += cpu_seconds(proc) - cpu0
    return Measured(len(batches), raw_rates, raw_seconds, rounds, cpu)


def run_collector(work: Path, args: argparse.Namespace) -> tuple[Measured, int]:
    """Start ``kubetune collector``, run the rounds, stop it; (measured, committed lines)."""
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
        measured = run_rounds(work, args, port, proc)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    return measured, len(committed_lines(work / "store"))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--seconds", type=int, default=3, help="per collector round")
    parser.add_argument("--rounds", type=int, default=4, help="raw/collector alternations")
    parser.add_argument("--clients", type=int, default=16, help="keep-alive connections")
    parser.add_argument("--batch", type=int, default=100, help="records per request")
    parser.add_argument("--raw-batches", type=int, default=2000, help="batches per raw run")
    parser.add_argument("--workers", type=int, default=2, help="the collector's --workers")
    parser.add_argument("--segment-bytes", type=int, default=1 << 20, help="the collector's")
    parser.add_argument(
        "--client",
        choices=("auto", "wrk", "python"),
        default="auto",
        help="load generator; auto: wrk when it is installed, else python",
    )
    parser.add_argument(
        "--quick", action="store_true", help="2 rounds of 1 s: under 20 s, same output shape"
    )
    args = parser.parse_args()
    if args.client == "auto":
        args.client = "wrk" if shutil.which("wrk") else "python"
    elif args.client == "wrk" and not shutil.which("wrk"):
        parser.error("wrk is not installed (Debian: apt-get install wrk); or --client python")
    if args.quick:
        args.seconds = min(args.seconds, 1)
        args.rounds = min(args.rounds, 2)
        args.raw_batches = min(args.raw_batches, 100)
    return args


def main() -> None:
    args = parse_args()
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="collector-bench-") as tmp:
        measured, committed = run_collector(Path(tmp), args)
    rounds = measured.rounds
    posts = sum(r.posts for r in rounds)
    rps = posts * args.batch / sum(r.seconds for r in rounds)
    raw_records = len(measured.raw_rates) * measured.raw_batches * args.batch
    raw_rps = raw_records / sum(measured.raw_seconds)
    p99 = max(r.p99_ms for r in rounds)
    p50 = sum(r.p50_ms * r.posts for r in rounds) / posts
    server_us = measured.collector_cpu / posts * 1e6
    client_us = sum(r.client_cpu for r in rounds) / posts * 1e6
    print(
        f"collector ({args.workers} workers, {args.client} client, {args.clients} connections): "
        f"{rps:,.0f} records/s over {len(rounds)} rounds of {args.seconds} s "
        "(rounds: " + ", ".join(f"{r.posts * args.batch / r.seconds:,.0f}" for r in rounds) + ")"
    )
    print(
        f"latency per {args.batch}-record batch: p50 {p50:.1f} ms, p99 {p99:.1f} ms (worst "
        "round; rounds: " + ", ".join(f"{r.p99_ms:.1f}" for r in rounds) + "); "
        f"CPU per request: collector {server_us:.0f} us, client {client_us:.0f} us"
    )
    print(
        f"raw append+flush+fsync of the committed lines: {raw_rps:,.0f} records/s over "
        f"{len(measured.raw_rates)} runs of {measured.raw_batches} batches (runs: "
        + ", ".join(f"{r:,.0f}" for r in measured.raw_rates)
        + f"); ratio {rps / raw_rps:.2f}, "
        f"against the fastest run {rps / max(measured.raw_rates):.2f}"
    )
    print(f"{committed:,} lines committed in all; load average at start {load:.2f}")
    result = {
        "bench": "collector_throughput",
        "metric": "records_per_s",
        "value": round(rps, 1),
        "baseline": round(raw_rps, 1),
        "ratio": round(rps / raw_rps, 4),
        "goal": 0.5,
        "unit": "records/s",
        "p99_ms": round(p99, 1),
        "p99_goal_ms": 50,
        "ratio_vs_fastest_raw_run": round(rps / max(measured.raw_rates), 4),
        "collector_cpu_us_per_request": round(server_us),
        "client_cpu_us_per_request": round(client_us),
        "client": args.client,
        "clients": args.clients,
        "workers": args.workers,
        "load_average": round(load, 2),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
