"""The collector under faults: 16 clients post 50,000 records while the collector is SIGKILLed
twice (or, with ``--workers 2``, its committer, one of its workers and then the whole
collector); then the loop's real collect step reads every acknowledged record exactly once.

Everything is real: the ``kubetune collector`` process on 127.0.0.1, aiohttp clients retrying
on errors and timeouts, 5% of the records sent again by the clients (a client-side duplicate
rate), and ``python -m kubetune_workloads feedback`` reading the store.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.helpers.collector import TOKEN, CollectorProcess, run_collect

RECORDS = 50_000
BATCH = 100
CLIENTS = 16
DUPLICATE_RATE = 0.05
PERIOD = round(1 / DUPLICATE_RATE)  # every 20th record is sent twice
# fractions of the records acknowledged at each kill, by the number of kills
KILL_AT = {2: (0.3, 0.65), 3: (0.25, 0.5, 0.75)}
ID = re.compile(r"\[(r\d+)\]")


def record(i: int) -> dict[str, Any]:
    return {
        "id": f"r{i}",
        "prompt": f"[r{i}] How do I reset my password on device {i % 97}?",
        "response": "Open Settings, then Account, then Reset password.",
        "rating": (i % 5) + 1,
        "model_version": "c0",
    }


def collect(tmp_path: Path, store: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Run the loop's collect step on the store; returns its result and training records."""
    out = tmp_path / "collected"
    return collect_uri(tmp_path, f"file://{store / 'default' / 'loop'}", f"file://{out}")


def collect_uri(
    tmp_path: Path, source: str, output: str
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """``python -m kubetune_workloads feedback`` in collect mode, from ``source``."""
    result = run_collect(tmp_path, source, output)
    if output.startswith("file://"):
        text = (Path(output.removeprefix("file://")) / "feedback.jsonl").read_text()
    else:
        import fsspec

        fs = fsspec.filesystem("s3", client_kwargs={"endpoint_url": os.environ["AWS_ENDPOINT_URL"]})
        text = fs.cat_file(output.removeprefix("s3://") + "/feedback.jsonl").decode()
    return result, [json.loads(line) for line in text.splitlines()]


class Clients:
    def __init__(self, url: str) -> None:
        self.url = f"{url}/v1/feedback/default/loop"
        self.acked: set[str] = set()
        self.sent: set[str] = set()
        self.retries = 0
        self.statuses: dict[int, int] = {}
        self.duplicates_sent = 0
        self.batches: asyncio.Queue[list[dict[str, Any]]] = asyncio.Queue()
        rng = random.Random(17)
        for start in range(0, RECORDS, BATCH):
            self.batches.put_nowait([record(i) for i in range(start, start + BATCH)])
        self.rng = rng
        self.resend: list[dict[str, Any]] = []
        self.open_batches = 0

    async def client(self, session: aiohttp.ClientSession) -> None:
        headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/x-ndjson"}
        while True:
            batch = self.batches.get_nowait() if not self.batches.empty() else []
            # client-side duplicates: records already acknowledged, sent again in later batches
            extra = [self.resend.pop() for _ in range(min(len(self.resend), 10))]
            if not batch and not extra:
                if self.batches.empty() and self.open_batches == 0:
                    return
                await asyncio.sleep(0.01)  # others' batches may still add records to resend
                continue
            self.open_batches += 1
            self.duplicates_sent += len(extra)
            body = "".join(json.dumps(r) + "\n" for r in batch + extra).encode()
            ids = [r["id"] for r in batch + extra]
            while True:
                self.sent.update(ids)
                try:
                    async with session.post(self.url, data=body, headers=headers) as response:
                        await response.read()
                        self.statuses[response.status] = self.statuses.get(response.status, 0) + 1
                        if response.status == 200:
                            break
                        assert response.status in (429, 503), response.status
                except (aiohttp.ClientError, TimeoutError):
                    pass
                self.retries += 1
                await asyncio.sleep(0.05 + self.rng.random() * 0.1)
            self.acked.update(ids)
            self.resend.extend(r for r in batch if int(r["id"][1:]) % PERIOD == 0)
            self.open_batches -= 1


async def post_all(collector: CollectorProcess, kills: tuple[str, ...]) -> Clients:
    """Post everything; at each of KILL_AT, SIGKILL the ``collector`` (then restart it), one
    ``worker`` of several or their ``committer`` (the collector's supervisor starts another)."""
    clients = Clients(collector.url)
    timeout = aiohttp.ClientTimeout(total=5)
    connector = aiohttp.TCPConnector(limit=CLIENTS)

    async def killer() -> None:
        for fraction, what in zip(KILL_AT[len(kills)], kills, strict=True):
            while len(clients.acked) < fraction * RECORDS:
                await asyncio.sleep(0.01)
            if what == "worker":
                collector.kill_worker()
                continue
            if what == "committer":
                collector.kill_committer()
                continue
            collector.kill()
            await asyncio.sleep(0.2)
            await asyncio.to_thread(collector.start)

    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
        kill_task = asyncio.create_task(killer())
        await asyncio.gather(*(clients.client(session) for _ in range(CLIENTS)))
        await kill_task
    return clients


@pytest.mark.slow
@pytest.mark.parametrize(
    ("workers", "kills"),
    [(1, ("collector", "collector")), (2, ("committer", "worker", "collector"))],
    ids=["one-process", "two-workers"],
)
def test_fault_sigkill_twice_every_acknowledged_record_exactly_once(
    tmp_path: Path, workers: int, kills: tuple[str, ...]
) -> None:
    collector = CollectorProcess(tmp_path, "--workers", str(workers))
    collector.start()
    started = time.monotonic()
    try:
        clients = asyncio.run(post_all(collector, kills))
    finally:
        collector.stop()
    posting = time.monotonic() - started
    assert collector.starts == 1 + kills.count("collector")  # each killed collector restarted
    if "worker" in kills:
        log = collector.log.read_text()
        assert re.search(r"collector worker \d \(pid \d+\) ended: killed by SIGKILL", log)
        assert re.search(r"collector committer \(pid \d+\) ended: killed by SIGKILL", log)
        assert "supervisor is gone" in log
    assert len(clients.acked) == RECORDS
    assert clients.duplicates_sent == DUPLICATE_RATE * RECORDS

    # No segment holds a partial line or an id twice (the store itself is clean).
    segments = sorted((tmp_path / "store").rglob("*.jsonl"))
    stored: list[str] = []
    for segment in segments:
        data = segment.read_bytes()
        assert data.endswith(b"\n"), segment
        stored.extend(json.loads(line)["id"] for line in data.splitlines())
    assert len(stored) == len(set(stored))

    result, records = collect(tmp_path, tmp_path / "store")
    ids = [ID.search(r["instruction"]).group(1) for r in records]  # type: ignore[union-attr]
    assert len(ids) == len(set(ids)), "a record was collected twice"
    assert set(ids) >= clients.acked, "an acknowledged record was lost"
    assert set(ids) <= clients.sent
    assert result.get("metrics", {}).get("usedRecords", len(ids)) == len(ids)
    print(
        json.dumps(
            {
                "acknowledged": len(clients.acked),
                "collected": len(ids),
                "duplicatesSent": clients.duplicates_sent,
                "retries": clients.retries,
                "statuses": clients.statuses,
                "segments": len(segments),
                "postingSeconds": round(posting, 1),
            }
        )
    )


async def post_to_replicas(urls: list[str], batches: int) -> set[str]:
    """Every batch to one replica; every other batch also, at the same time, to the other."""
    acked: set[str] = set()
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/x-ndjson"}

    async def send(session: aiohttp.ClientSession, url: str, rows: list[dict[str, Any]]) -> None:
        body = "".join(json.dumps(r) + "\n" for r in rows).encode()
        async with session.post(f"{url}/v1/feedback/default/loop", data=body, headers=headers) as r:
            assert r.status == 200, await r.text()
            answer = await r.json()
            assert answer["accepted"] + answer["duplicates"] == len(rows)
        acked.update(row["id"] for row in rows)

    async def client(session: aiohttp.ClientSession, numbers: range) -> None:
        for b in numbers:
            rows = [record(i) for i in range(b * BATCH, (b + 1) * BATCH)]
            targets = urls if b % 2 == 0 else [urls[b % len(urls)]]
            await asyncio.gather(*(send(session, url, rows) for url in targets))

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        per = batches // 8
        await asyncio.gather(*(client(session, range(k * per, (k + 1) * per)) for k in range(8)))
    return acked


@pytest.mark.slow
def test_two_replicas_on_one_store_write_each_id_once(tmp_path: Path) -> None:
    shared = f"file://{tmp_path / 'shared'}"  # one store, as a ReadWriteMany claim
    replicas = []
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        replicas.append(CollectorProcess(tmp_path / name, store_uri=shared))
    for replica in replicas:
        replica.start()
    try:
        acked = asyncio.run(post_to_replicas([r.url for r in replicas], batches=80))
    finally:
        for replica in replicas:
            replica.stop()
    stored = [
        json.loads(line)["id"]
        for segment in sorted((tmp_path / "shared").rglob("*.jsonl"))
        for line in segment.read_bytes().splitlines()
    ]
    assert len(stored) == len(set(stored)) == len(acked) == 80 * BATCH
    writers = {p.name.split("Z-", 1)[1] for p in (tmp_path / "shared").rglob("*.jsonl")}
    assert len(writers) == 2  # both replicas wrote segments
