"""A stalled store or a frozen committer: requests get 503 after ``--commit-timeout``, the
collector reports not ready, and once it moves again nothing is lost or written twice.

The frozen committer is real (SIGSTOP to the committer process of a ``--workers 2``
collector). A hung store (an NFS volume that stops answering) is the disk's flush blocked until
the test releases it, in a one-process collector served in the test's process.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import threading
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.collector import TOKEN, CollectorProcess, stored_ids, write_tokens

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


Answer = tuple[int, dict[str, Any], str | None]  # status, JSON body, Retry-After


@dataclass
class Client:
    """HTTP calls to an in-process collector (aiohttp's test server on 127.0.0.1)."""

    session: Any
    url: str

    async def post(self, ids: list[str]) -> Answer:
        headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/x-ndjson"}
        async with self.session.post(f"{self.url}{PATH}", data=body(ids), headers=headers) as r:
            return r.status, await r.json(), r.headers.get("Retry-After")

    async def ready(self) -> Answer:
        async with self.session.get(f"{self.url}/readyz") as r:
            return r.status, await r.json(), None


@contextlib.asynccontextmanager
async def one_process(tmp_path: Path, **settings: Any) -> AsyncIterator[Client]:
    """A one-process collector of a file:// store at ``tmp_path/store``, served here."""
    import aiohttp
    from aiohttp.test_utils import TestServer
    from kubetune.collector import server
    from kubetune.collector.auth import TokenStore

    config = server.CollectorConfig(store=f"file://{tmp_path / 'store'}", **settings)
    service = server.CollectorService(config, TokenStore(write_tokens(tmp_path / "t.yaml")))
    async with (
        TestServer(service.app(), host="127.0.0.1") as test_server,
        aiohttp.ClientSession() as session,
    ):
        yield Client(session, f"http://127.0.0.1:{test_server.port}")


def test_a_hung_store_is_a_503_store_stalled_and_not_ready(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One process: the disk's flush blocks (a hung volume) until released."""
    from kubetune.collector.store import LocalBackend

    release = threading.Event()
    real_flush = LocalBackend.flush

    def hung_flush(self: LocalBackend, *args: Any) -> None:
        release.wait(30)
        real_flush(self, *args)

    async def scenario() -> list[Answer]:
        async with one_process(tmp_path, commit_timeout=0.5) as client:
            out = [await client.post(["a0"])]
            monkeypatch.setattr(LocalBackend, "flush", hung_flush)
            out += [await client.post(["b0"]), await client.ready()]
            release.set()
            deadline = time.monotonic() + 20
            while (ready := await client.ready())[0] != 200:
                assert time.monotonic() < deadline, ready
                await asyncio.sleep(0.2)
            return [*out, ready, await client.post(["b0", "c0"])]

    answers = asyncio.run(scenario())
    assert answers[0][:2] == (200, {"accepted": 1, "duplicates": 0})
    status, answer, retry_after = answers[1]
    assert (status, answer["error"], retry_after) == (503, "store_stalled", "1")
    assert answers[2][0] == 503 and answers[2][1]["reason"] in ("store stalled", "store failing")
    assert answers[3][0] == 200  # ready again once the flush is done and 5 s have passed
    assert answers[4][:2] == (200, {"accepted": 1, "duplicates": 1})
    assert sorted(stored_ids(tmp_path / "store" / "default" / "loop")) == ["a0", "b0", "c0"]


def test_a_failed_commit_of_a_one_process_collector_is_a_503(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The disk fails a flush (EIO) once: that request gets 503 store_error with Retry-After
    (it was a 500 for a one-process collector), and its retry is committed once."""
    from kubetune.collector.store import LocalBackend

    real_flush = LocalBackend.flush
    failures = [OSError(5, "injected EIO")]

    def failing_flush(self: LocalBackend, *args: Any) -> None:
        if failures:
            self.close()  # as the real flush does when the disk fails it
            raise failures.pop()
        real_flush(self, *args)

    async def scenario() -> list[Answer]:
        async with one_process(tmp_path) as client:
            out = [await client.post(["a0"])]
            monkeypatch.setattr(LocalBackend, "flush", failing_flush)
            out.append(await client.post(["b0"]))
            await asyncio.sleep(1.1)  # a commit failed a moment ago: 503 for a second
            return [*out, await client.post(["b0", "c0"])]

    answers = asyncio.run(scenario())
    assert answers[0][:2] == (200, {"accepted": 1, "duplicates": 0})
    status, answer, retry_after = answers[1]
    assert (status, answer["error"], retry_after) == (503, "store_error", "1")
    assert answers[2][0] == 200 and answers[2][1]["accepted"] + answers[2][1]["duplicates"] == 2
    assert sorted(stored_ids(tmp_path / "store" / "default" / "loop")) == ["a0", "b0", "c0"]
