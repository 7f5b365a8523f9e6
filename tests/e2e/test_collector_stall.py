"""A stalled store or a frozen committer: requests get 503 after ``--commit-timeout``, the
collector reports not ready, and once it moves again nothing is lost or written twice.

The frozen committer is real (SIGSTOP to the committer process of a ``--workers 2``
collector). A hung store (an NFS volume that stops answering) is the disk's flush blocked until
the test releases it, in a one-process collector served in the test's process.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.collector import TOKEN, CollectorProcess, write_tokens

PATH = "/v1/feedback/default/loop"


def body(ids: list[str]) -> bytes:
    rows = [{"id": i, "prompt": f"question {i}", "response": f"answer {i}"} for i in ids]
    return "".join(json.dumps(row) + "\n" for row in rows).encode()


def post(url: str, ids: list[str]) -> tuple[int, dict[str, Any], str | None]:
    request = urllib.request.Request(
        f"{url}{PATH}",
        data=body(ids),
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/x-ndjson"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read()), None
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read()), exc.headers.get("Retry-After")


def readyz(url: str) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(f"{url}/readyz", timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def stored_ids(store: Path) -> list[str]:
    return [
        json.loads(line)["id"]
        for segment in sorted(store.rglob("*.jsonl"))
        for line in segment.read_bytes().splitlines()
    ]


def test_a_frozen_committer_is_a_503_and_not_ready_then_nothing_is_lost(tmp_path: Path) -> None:
    collector = CollectorProcess(tmp_path, "--workers", "2", "--commit-timeout", "1")
    collector.start()
    try:
        assert post(collector.url, ["a0", "a1"])[:2] == (200, {"accepted": 2, "duplicates": 0})
        assert readyz(collector.url) == (200, {"ready": True})
        committer = collector.committer()
        os.kill(committer, signal.SIGSTOP)
        try:
            started = time.monotonic()
            status, answer, retry_after = post(collector.url, ["b0", "b1"])
            waited = time.monotonic() - started
            assert (status, answer["error"], retry_after) == (503, "store_stalled", "1")
            assert "--commit-timeout" in answer["message"]
            assert 0.9 <= waited < 10
            # each worker answers for the committer (probes land on either: new connections)
            for _ in range(4):
                status, ready = readyz(collector.url)
                assert status == 503 and ready["ready"] is False, ready
                assert ready["reason"] in ("store failing", "committer not answering"), ready
        finally:
            os.kill(committer, signal.SIGCONT)
        deadline = time.monotonic() + 20
        while readyz(collector.url)[0] != 200:
            assert time.monotonic() < deadline, "the collector stays not ready"
            time.sleep(0.2)
        # the stalled batch was committed once the committer moved on: the retry writes
        # nothing twice
        status, answer, _ = post(collector.url, ["b0", "b1", "c0"])
        assert status == 200 and answer["accepted"] + answer["duplicates"] == 3
        assert answer["accepted"] in (1, 3)
    finally:
        collector.stop()
    ids = stored_ids(collector.store)
    assert sorted(ids) == ["a0", "a1", "b0", "b1", "c0"]
    page = collector.log.read_text()
    assert "Traceback" not in page


def test_a_hung_store_is_a_503_store_stalled_and_not_ready(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One process: the disk's flush blocks (a hung volume) until released."""
    from kubetune.collector import server
    from kubetune.collector.auth import TokenStore
    from kubetune.collector.store import LocalBackend

    release = threading.Event()
    real_flush = LocalBackend.flush

    def hung_flush(self: LocalBackend, *args: Any) -> None:
        release.wait(30)
        real_flush(self, *args)

    store = tmp_path / "store"
    config = server.CollectorConfig(store=f"file://{store}", commit_timeout=0.5)
    service = server.CollectorService(config, TokenStore(write_tokens(tmp_path / "t.yaml")))
    answers = asyncio.run(_stall_then_release(service, monkeypatch, hung_flush, release))
    assert answers[0][:2] == (200, {"accepted": 1, "duplicates": 0})
    status, answer, retry_after = answers[1]
    assert (status, answer["error"], retry_after) == (503, "store_stalled", "1")
    assert answers[2][0] == 503 and answers[2][1]["reason"] in ("store stalled", "store failing")
    assert answers[3][0] == 200  # ready again once the flush is done and 5 s have passed
    assert answers[4][:2] == (200, {"accepted": 1, "duplicates": 1})
    assert sorted(stored_ids(store / "default" / "loop")) == ["a0", "b0", "c0"]


async def _stall_then_release(
    service: Any, monkeypatch: pytest.MonkeyPatch, hung_flush: Any, release: threading.Event
) -> list[tuple[int, dict[str, Any], str | None]]:
    import aiohttp
    from aiohttp.test_utils import TestServer
    from kubetune.collector.store import LocalBackend

    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/x-ndjson"}
    out: list[tuple[int, dict[str, Any], str | None]] = []
    async with TestServer(service.app(), host="127.0.0.1") as test_server:
        url = f"http://127.0.0.1:{test_server.port}"
        async with aiohttp.ClientSession() as session:

            async def send(ids: list[str]) -> None:
                async with session.post(f"{url}{PATH}", data=body(ids), headers=headers) as r:
                    out.append((r.status, await r.json(), r.headers.get("Retry-After")))

            async def ready() -> None:
                async with session.get(f"{url}/readyz") as r:
                    out.append((r.status, await r.json(), None))

            await send(["a0"])
            monkeypatch.setattr(LocalBackend, "flush", hung_flush)
            await send(["b0"])
            await ready()
            release.set()
            deadline = time.monotonic() + 20
            while True:
                async with session.get(f"{url}/readyz") as r:
                    if r.status == 200:
                        out.append((r.status, await r.json(), None))
                        break
                assert time.monotonic() < deadline
                await asyncio.sleep(0.2)
            await send(["b0", "c0"])
    return out


def test_a_failed_commit_of_a_one_process_collector_is_a_503(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The disk fails a flush (EIO) once: that request gets 503 store_error with Retry-After
    (it was a 500 for a one-process collector), and its retry is committed once."""
    from kubetune.collector import server
    from kubetune.collector.auth import TokenStore
    from kubetune.collector.store import LocalBackend

    real_flush = LocalBackend.flush
    failures = [OSError(5, "injected EIO")]

    def failing_flush(self: LocalBackend, *args: Any) -> None:
        if failures:
            self.close()  # as the real flush does when the disk fails it
            raise failures.pop()
        real_flush(self, *args)

    store = tmp_path / "store"
    config = server.CollectorConfig(store=f"file://{store}")
    service = server.CollectorService(config, TokenStore(write_tokens(tmp_path / "t.yaml")))
    answers = asyncio.run(_fail_once_then_retry(service, monkeypatch, failing_flush))
    assert answers[0][:2] == (200, {"accepted": 1, "duplicates": 0})
    status, answer, retry_after = answers[1]
    assert (status, answer["error"], retry_after) == (503, "store_error", "1")
    assert answers[2][0] == 200 and answers[2][1]["accepted"] + answers[2][1]["duplicates"] == 2
    assert sorted(stored_ids(store / "default" / "loop")) == ["a0", "b0", "c0"]


async def _fail_once_then_retry(
    service: Any, monkeypatch: pytest.MonkeyPatch, failing_flush: Any
) -> list[tuple[int, dict[str, Any], str | None]]:
    import aiohttp
    from aiohttp.test_utils import TestServer
    from kubetune.collector.store import LocalBackend

    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/x-ndjson"}
    out: list[tuple[int, dict[str, Any], str | None]] = []
    async with TestServer(service.app(), host="127.0.0.1") as test_server:
        url = f"http://127.0.0.1:{test_server.port}{PATH}"
        async with aiohttp.ClientSession() as session:
            for ids in (["a0"], ["b0"], ["b0", "c0"]):
                if ids == ["b0"]:
                    monkeypatch.setattr(LocalBackend, "flush", failing_flush)
                async with session.post(url, data=body(ids), headers=headers) as r:
                    out.append((r.status, await r.json(), r.headers.get("Retry-After")))
                await asyncio.sleep(1.1 if ids == ["b0"] else 0)  # 503 for a second after
    return out
