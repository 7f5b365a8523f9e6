"""The real collector against bad requests: each gets the right status, nothing is lost or
corrupted, and the valid records of a mixed batch are kept."""

from __future__ import annotations

import asyncio
import gzip
import http.client
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.collector import OTHER_TOKEN, TOKEN, CollectorProcess

LIMIT = 64 * 1024
PATH = "/v1/feedback/default/support"
AUTH = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}


@pytest.fixture(scope="module")
def collector(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CollectorProcess]:
    workdir = tmp_path_factory.mktemp("collector")
    process = CollectorProcess(
        workdir,
        "--max-body-bytes",
        str(LIMIT),
        "--max-records",
        "50",
        "--body-timeout",
        "1",
    )
    process.start()
    yield process
    process.stop()


def post(
    collector: CollectorProcess,
    body: bytes | Iterator[bytes],
    headers: dict[str, str] | None = None,
    path: str = PATH,
    method: str = "POST",
) -> tuple[int, dict[str, Any], dict[str, str]]:
    conn = http.client.HTTPConnection("127.0.0.1", collector.port, timeout=10)
    try:
        chunked = not isinstance(body, bytes)
        conn.request(
            method,
            path,
            body=body,
            headers=AUTH if headers is None else headers,
            encode_chunked=chunked,
        )
        response = conn.getresponse()
        data = response.read()
    finally:
        conn.close()
    try:
        payload = json.loads(data) if data else {}
    except ValueError:
        payload = {"raw": data.decode(errors="replace")}
    return response.status, payload, dict(response.headers)


def good(i: int, **extra: Any) -> dict[str, Any]:
    return {"id": f"good-{i}", "prompt": f"question {i}", "response": f"answer {i}", **extra}


def jsonl(*rows: Any) -> bytes:
    return b"".join(json.dumps(r).encode() + b"\n" for r in rows)


def bomb() -> bytes:
    return gzip.compress(b"\0" * (20 << 20), compresslevel=9)


# (name, body, headers or None for the default ones, expected status, path)
CASES: list[tuple[str, Any, dict[str, str] | None, int, str]] = [
    ("truncated object", b'{"id": "x", "prompt": ', None, 400, PATH),
    ("trailing comma", b'[{"id": 1,}]', None, 400, PATH),
    ("unquoted key", b"{id: 1}", None, 400, PATH),
    ("two objects on a line", b'{"a":1}{"b":2}', None, 400, PATH),
    ("bare word", b"nul", None, 400, PATH),
    ("prompt is a number", json.dumps({"prompt": 3, "response": "r"}).encode(), None, 400, PATH),
    (
        "response is a list",
        json.dumps({"prompt": "p", "response": ["r"]}).encode(),
        None,
        400,
        PATH,
    ),
    ("rating is a string", json.dumps(good(0, rating="five")).encode(), None, 400, PATH),
    ("rating is NaN", b'{"id":"n","prompt":"p","response":"r","rating":NaN}', None, 400, PATH),
    ("thumbs sideways", json.dumps(good(0, thumbs="sideways")).encode(), None, 400, PATH),
    ("id is a boolean", json.dumps({**good(0), "id": True}).encode(), None, 400, PATH),
    ("id too long", json.dumps({**good(0), "id": "x" * 300}).encode(), None, 400, PATH),
    (
        "messages not a list",
        json.dumps({"messages": "hi", "response": "r"}).encode(),
        None,
        400,
        PATH,
    ),
    ("metadata is a string", json.dumps(good(0, metadata="m")).encode(), None, 400, PATH),
    (
        "openai content is a number",
        json.dumps(
            {
                "request": {"messages": [{"role": "user", "content": 5}]},
                "response": {"choices": [{"message": {"content": "a"}}]},
            }
        ).encode(),
        None,
        400,
        PATH,
    ),
    (
        "openai without choices",
        json.dumps(
            {
                "request": {"messages": [{"role": "user", "content": "q"}]},
                "response": {"choices": []},
            }
        ).encode(),
        None,
        400,
        PATH,
    ),
    ("no response at all", json.dumps({"prompt": "p", "rating": 1}).encode(), None, 400, PATH),
    ("no prompt", json.dumps({"response": "r"}).encode(), None, 400, PATH),
    ("lone surrogate", b'{"prompt":"\\ud800","response":"r"}', None, 400, PATH),
    ("a JSON string", b'"just text"', None, 400, PATH),
    ("array of arrays", b"[[1, 2], [3]]", None, 400, PATH),
    ("empty body", b"", None, 400, PATH),
    ("empty array", b"[]", None, 400, PATH),
    ("too many records", jsonl(*[good(1000 + i) for i in range(51)]), None, 400, PATH),
    ("declared oversize", b"{}", {**AUTH, "Content-Length": str(LIMIT * 10)}, 413, PATH),
    ("chunked oversize", iter([b" " * 8192] * 12), None, 413, PATH),
    ("gzip bomb", bomb(), {**AUTH, "Content-Encoding": "gzip"}, 413, PATH),
    ("broken gzip", b"\x1f\x8b\x08\x00garbage", {**AUTH, "Content-Encoding": "gzip"}, 400, PATH),
    (
        "cut gzip",
        gzip.compress(jsonl(good(1)))[:-12],
        {**AUTH, "Content-Encoding": "gzip"},
        400,
        PATH,
    ),
    ("brotli", b"xx", {**AUTH, "Content-Encoding": "br"}, 415, PATH),
    (
        "binary octet-stream",
        os.urandom(512),
        {**AUTH, "Content-Type": "application/octet-stream"},
        415,
        PATH,
    ),
    ("binary as json", b"\xff\xfe\x00\x01" + os.urandom(256), None, 400, PATH),
    ("NUL bytes", b'{"prompt":"p"}\x00\x00', None, 400, PATH),
    ("no token", jsonl(good(1)), {"Content-Type": "application/json"}, 401, PATH),
    ("wrong token", jsonl(good(1)), {**AUTH, "Authorization": "Bearer nope-nope-nope"}, 401, PATH),
    ("basic auth", jsonl(good(1)), {**AUTH, "Authorization": "Basic YWRtaW46YWRtaW4="}, 401, PATH),
    (
        "token of another loop",
        jsonl(good(1)),
        {**AUTH, "Authorization": f"Bearer {OTHER_TOKEN}"},
        403,
        PATH,
    ),
    ("wrong namespace", jsonl(good(1)), None, 403, "/v1/feedback/team-b/other"),
    ("not a Kubernetes name", jsonl(good(1)), None, 404, "/v1/feedback/default/Bad_Loop"),
    ("GET instead of POST", b"", None, 405, PATH),
]


def test_forty_bad_requests_get_the_right_status(collector: CollectorProcess) -> None:
    assert len(CASES) + 1 >= 40  # with the slow client below
    wrong = []
    for name, body, headers, expected, path in CASES:
        method = "GET" if name.startswith("GET") else "POST"
        status, payload, _ = post(collector, body, headers, path, method)
        if status != expected:
            wrong.append(f"{name}: {status} {payload}")
        if status == 400 and "rejected" in payload:
            for rejected in payload["rejected"]:
                assert all({"path", "reason"} <= set(e) for e in rejected["errors"])
    assert not wrong, wrong
    assert slow_client(collector) == 408
    # the tokens never reach the log
    log = collector.log.read_text()
    assert TOKEN not in log and OTHER_TOKEN not in log


def slow_client(collector: CollectorProcess) -> int:
    """Headers and half a body, then silence for longer than --body-timeout."""
    with socket.create_connection(("127.0.0.1", collector.port), timeout=10) as sock:
        sock.sendall(
            f"POST {PATH} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
            'Content-Type: application/json\r\nContent-Length: 400\r\n\r\n{"id": '.encode()
        )
        time.sleep(1.5)
        data = sock.recv(4096)
    return int(data.split()[1])


def stored(collector: CollectorProcess) -> list[dict[str, Any]]:
    rows = []
    for segment in sorted(collector.store.rglob("*.jsonl")):
        data = segment.read_bytes()
        assert data.endswith(b"\n")
        rows.extend(json.loads(line) for line in data.splitlines())
    return rows


def test_mixed_batch_keeps_the_valid_records_and_names_the_bad_ones(
    collector: CollectorProcess,
) -> None:
    body = jsonl(good(1), {"prompt": "p", "rating": "x", "response": "r"}, good(2)) + b"{oops\n"
    status, payload, _ = post(collector, body)
    assert status == 400
    assert payload["accepted"] == 2
    assert [r["index"] for r in payload["rejected"]] == [1, 3]
    assert payload["rejected"][0]["errors"] == [
        {"path": "rating", "reason": "must be a number, not a string"}
    ]
    # a retry of the whole batch writes nothing twice
    status, payload, _ = post(collector, body)
    assert status == 400 and payload["accepted"] == 0 and payload["duplicates"] == 2
    # gzip, OpenAI pairs, chat messages and thumbs are all understood
    batch = [
        good(3),
        {
            "id": "oa-1",
            "request": {
                "model": "m",
                "messages": [
                    {"role": "system", "content": "be brief"},
                    {"role": "user", "content": "q?"},
                ],
            },
            "response": {
                "model": "m-c1",
                "choices": [{"message": {"role": "assistant", "content": "a."}}],
            },
            "thumbs": "down",
        },
        {
            "id": "chat-1",
            "messages": [
                {"role": "user", "content": "hi"},
                {"role": "assistant", "content": "hello"},
            ],
        },
    ]
    headers = {**AUTH, "Content-Encoding": "gzip"}
    status, payload, _ = post(collector, gzip.compress(jsonl(*batch)), headers)
    assert (status, payload) == (200, {"accepted": 3, "duplicates": 0})
    rows = {r["id"]: r for r in stored(collector)}
    assert {"good-1", "good-2", "good-3", "oa-1", "chat-1"} <= set(rows)
    assert len(rows) == len(stored(collector))  # no id twice
    assert rows["oa-1"]["prompt"] == "q?" and rows["oa-1"]["response"] == "a."
    assert rows["oa-1"]["thumbs"] == "down" and "rating" not in rows["oa-1"]
    assert rows["oa-1"]["model_version"] == "m-c1"
    assert rows["chat-1"]["prompt"] == "hi" and rows["chat-1"]["response"] == "hello"
    # a record without an id gets a content hash: sending it twice stores it once
    anonymous = json.dumps({"prompt": "same", "response": "same"}).encode()
    assert post(collector, anonymous)[1] == {"accepted": 1, "duplicates": 0}
    assert post(collector, anonymous)[1] == {"accepted": 0, "duplicates": 1}


def nested_line(record_id: str, levels: int) -> bytes:
    """A valid record whose metadata is ``levels`` objects deep (built as text: the json
    module cannot write 3000 levels)."""
    head = f'{{"id":"{record_id}","prompt":"p","response":"r","metadata":'
    return (head + '{"a":' * levels + "1" + "}" * (levels + 1)).encode()


def metrics(collector: CollectorProcess) -> str:
    conn = http.client.HTTPConnection("127.0.0.1", collector.port, timeout=10)
    try:
        conn.request("GET", "/metrics")
        return conn.getresponse().read().decode()
    finally:
        conn.close()


def test_a_record_nested_too_deep_is_rejected_alone(collector: CollectorProcess) -> None:
    """Deeper than the parsers read (3000 levels) or than the collector stores (500): a
    per-record 400 with the field path; the valid records of the batch are committed."""
    body = b"\n".join([jsonl(good(60)).strip(), nested_line("deep", 3000), nested_line("mid", 500)])
    status, payload, _ = post(collector, body + b"\n" + jsonl(good(61)))
    assert status == 400 and (payload["accepted"], payload["duplicates"]) == (2, 0)
    assert payload["rejected"] == [
        {"index": 1, "id": None, "errors": [{"path": "", "reason": REASON_DEEP_LINE}]},
        {"index": 2, "id": "mid", "errors": [{"path": "metadata", "reason": REASON_DEEP}]},
    ]
    ids = [row["id"] for row in stored(collector)]
    assert {"good-60", "good-61"} <= set(ids) and not {"deep", "mid"} & set(ids)
    status, payload, _ = post(collector, nested_line("alone", 3000))
    assert status == 400 and payload["accepted"] == 0
    assert [r["errors"][0]["path"] for r in payload["rejected"]] == [""]
    assert 'requests_total{code="500"}' not in metrics(collector)
    assert "Traceback" not in collector.log.read_text()


REASON_DEEP = "nested more than 128 levels deep"
REASON_DEEP_LINE = "line 2 is nested more than 128 levels deep"


def test_every_rejected_record_is_listed_with_its_index_and_id(
    collector: CollectorProcess,
) -> None:
    rows = [good(200 + i, rating="x" if i % 2 else 3) for i in range(50)]  # --max-records
    status, payload, _ = post(collector, jsonl(*rows))
    assert status == 400 and payload["accepted"] + payload["duplicates"] == 25
    assert set(payload) == {"accepted", "duplicates", "rejected"}
    assert [(r["index"], r["id"]) for r in payload["rejected"]] == [
        (i, f"good-{200 + i}") for i in range(1, 50, 2)
    ]
    assert all(
        r["errors"] == [{"path": "rating", "reason": "must be a number, not a string"}]
        for r in payload["rejected"]
    )


def test_the_content_types_curl_and_plain_clients_send_are_accepted(
    collector: CollectorProcess,
) -> None:
    """`curl -d` (form-urlencoded), text/plain and no Content-Type at all: the body is JSON."""
    kinds = ["application/x-www-form-urlencoded", "text/plain; charset=utf-8", None]
    for i, kind in enumerate(kinds):
        headers = {"Authorization": AUTH["Authorization"]}
        if kind is not None:
            headers["Content-Type"] = kind
        assert post(collector, jsonl(good(300 + i)), headers)[:2] == (
            200,
            {"accepted": 1, "duplicates": 0},
        ), kind


def metric(text: str, name: str) -> float:
    """The value of the one series of ``name`` in a /metrics page (0 when absent)."""
    values = [float(line.split()[-1]) for line in text.splitlines() if line.startswith(name)]
    assert len(values) <= 1, values
    return values[0] if values else 0.0


@pytest.mark.parametrize("workers", [1, 2])
def test_accepted_counts_the_lines_each_request_wrote(tmp_path: Path, workers: int) -> None:
    """accepted + duplicates = the valid records of a request; accepted, summed over the
    requests and in kubetune_collector_records_accepted_total, = the lines in the store. Also
    --max-record-bytes (one record: 400) and a batch over --max-pending-bytes alone (413).
    With 2 workers the same batch sent at once over 8 connections (both workers) is written
    once, and /metrics sums the workers' series and the committer's."""
    process = CollectorProcess(
        tmp_path,
        *("--max-record-bytes", "2048", "--max-pending-bytes", "8192"),
        *("--workers", str(workers)),
    )
    process.start()
    try:
        if workers > 1:  # the HTTP workers yield the CPU to the committer (niceness 5 more)
            base = os.getpriority(os.PRIO_PROCESS, process.proc.pid)
            niceness = {os.getpriority(os.PRIO_PROCESS, pid) for pid in process.workers()}
            committer = os.getpriority(os.PRIO_PROCESS, process.committer())
            assert committer == base and niceness == {base, min(base + 5, 19)}
        twice = jsonl(good(1), good(2), good(1, response="the same id again"))
        assert post(process, twice)[1] == {"accepted": 2, "duplicates": 1}
        reordered = jsonl({"prompt": "p", "response": "r"}, {"response": "r", "prompt": "p"})
        assert post(process, reordered)[1] == {"accepted": 1, "duplicates": 1}
        answers = asyncio.run(_same_records_at_once(process, rounds=6, clients=8))
        for round_answers in answers:
            assert all(a["accepted"] + a["duplicates"] == 3 for a in round_answers)
            assert sum(a["accepted"] for a in round_answers) == 3, round_answers
        big = good(9, response="x" * 3000)
        status, payload, _ = post(process, jsonl(good(8), big))
        assert (status, payload["accepted"]) == (400, 1)
        assert payload["rejected"] == [
            {"index": 1, "id": "good-9", "errors": [{"path": "", "reason": OVER_2048}]}
        ]
        batch = jsonl(*[good(100 + i, response="y" * 1500) for i in range(8)])  # ~12 KB
        status, payload, _ = post(process, batch)
        assert (status, payload["error"]) == (413, "too_large")
        page = metrics(process)
    finally:
        process.stop()
    ids = [row["id"] for row in stored(process)]
    assert len(ids) == len(set(ids)) == 2 + 1 + 6 * 3 + 1
    labels = '{loop="support",namespace="default"}'
    assert metric(page, f"kubetune_collector_records_accepted_total{labels}") == len(ids)
    assert metric(page, f"kubetune_collector_records_duplicate_total{labels}") == 2 + 6 * 7 * 3
    lines = sum(len(p.read_bytes()) for p in process.store.rglob("*.jsonl"))
    assert metric(page, f"kubetune_collector_bytes_total{labels}") == lines
    # one observation per request that wrote lines (the others waited on it or found theirs)
    assert metric(page, "kubetune_collector_commit_seconds_count") == 2 + 6 + 1
    assert 1 <= metric(page, f"kubetune_collector_segment_commits_total{labels}") <= 2 + 6 + 1


OVER_2048 = "record over 2048 bytes"


async def _same_records_at_once(
    process: CollectorProcess, rounds: int, clients: int
) -> list[list[dict[str, Any]]]:
    """Each round, ``clients`` requests post the same three new records at once."""
    import aiohttp

    out = []
    async with aiohttp.ClientSession() as session:

        async def one(body: bytes) -> dict[str, Any]:
            async with session.post(f"{process.url}{PATH}", data=body, headers=AUTH) as answer:
                assert answer.status == 200
                result: dict[str, Any] = await answer.json()
                return result

        for k in range(rounds):
            body = jsonl(*[good(0, id=f"race-{k}-{j}") for j in range(3)])
            out.append(list(await asyncio.gather(*(one(body) for _ in range(clients)))))
    return out


def test_an_unexpected_error_is_a_json_500_logged_and_counted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A bug in the handler (a fault injected into validation): JSON 500, the traceback in
    the log, kubetune_collector_requests_total{code="500"}; the next request is served."""
    from kubetune.collector import records, server
    from kubetune.collector.auth import TokenStore

    from tests.helpers.collector import write_tokens

    calls = {"n": 0}
    real = records.read_batch  # what the server calls, replaced there by the fault

    def faulty(*args: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("injected fault")
        return real(*args)

    monkeypatch.setattr(server, "read_batch", faulty)
    config = server.CollectorConfig(store=f"file://{tmp_path / 'store'}")
    service = server.CollectorService(config, TokenStore(write_tokens(tmp_path / "t.yaml")))
    answers = asyncio.run(_two_posts_and_metrics(service))
    assert answers[0] == (500, {"error": "internal_error", "message": ANY_500_MESSAGE})
    assert answers[1] == (200, {"accepted": 1, "duplicates": 0})
    page = answers[2][1]["text"]
    assert metric(page, 'kubetune_collector_requests_total{code="500"}') == 1
    assert metric(page, 'kubetune_collector_requests_total{code="200"}') == 1
    assert "injected fault" in caplog.text and "unexpected error" in caplog.text


ANY_500_MESSAGE = "unexpected error; see the log"


async def _two_posts_and_metrics(service: Any) -> list[tuple[int, dict[str, Any]]]:
    import aiohttp
    from aiohttp.test_utils import TestServer

    async with TestServer(service.app(), host="127.0.0.1") as test_server:
        url = f"http://127.0.0.1:{test_server.port}"
        out = []
        async with aiohttp.ClientSession() as session:
            for _ in range(2):
                async with session.post(f"{url}{PATH}", data=jsonl(good(1)), headers=AUTH) as r:
                    out.append((r.status, await r.json()))
            async with session.get(f"{url}/metrics") as r:
                out.append((r.status, {"text": await r.text()}))
    return out


def test_metrics_count_records_and_reasons(collector: CollectorProcess) -> None:
    post(collector, jsonl(good(50)))
    conn = http.client.HTTPConnection("127.0.0.1", collector.port, timeout=10)
    conn.request("GET", "/metrics")
    text = conn.getresponse().read().decode()
    conn.close()
    for name in (
        "kubetune_collector_records_accepted_total",
        "kubetune_collector_records_duplicate_total",
        'kubetune_collector_records_rejected_total{reason="invalid_record"}',
        "kubetune_collector_bytes_total",
        "kubetune_collector_commit_seconds_bucket",
        "kubetune_collector_store_lag_seconds",
        "kubetune_collector_pending_bytes",
    ):
        assert name in text, name


def test_a_lagging_store_answers_429_with_retry_after_and_loses_nothing(tmp_path: Path) -> None:
    """Pending records are bounded: over --max-pending-bytes, 429 and Retry-After.

    The store is made slow for real: a large open segment (each commit rewrites and fsyncs
    it, ~16 MB) while 32 clients post at once.
    """
    process = CollectorProcess(
        tmp_path,
        "--max-pending-bytes",
        str(1 << 20),
        "--max-body-bytes",
        str(2 << 20),
        "--segment-bytes",
        str(64 << 20),
    )
    process.start()
    try:
        filler = "x" * 4000
        for k in range(8):  # ~16 MB in the open segment
            rows = [good(0, id=f"fill-{k}-{j}", response=filler) for j in range(240)]
            assert post(process, jsonl(*rows))[0] == 200
        statuses = asyncio.run(_concurrent_posts(process))
        assert 429 in statuses and statuses.count(200) == 32
        ids = {row["id"] for row in stored(process)}
        assert {f"lag-{i}-{j}" for i in range(32) for j in range(20)} <= ids
        assert len(ids) == 32 * 20 + 8 * 240
    finally:
        process.stop()


async def _concurrent_posts(process: CollectorProcess) -> list[int]:
    import aiohttp

    statuses: list[int] = []

    async def client(session: aiohttp.ClientSession, i: int) -> None:
        body = jsonl(*[good(0, id=f"lag-{i}-{j}", response="y" * 4000) for j in range(20)])
        while True:
            async with session.post(f"{process.url}{PATH}", data=body, headers=AUTH) as response:
                statuses.append(response.status)
                if response.status == 200:
                    return
                assert response.status == 429
                assert response.headers["Retry-After"] == "1"
            await asyncio.sleep(0.05)

    async with aiohttp.ClientSession() as session:
        await asyncio.gather(*(client(session, i) for i in range(32)))
    return statuses


@pytest.mark.parametrize("workers", [1, 2])
def test_s3_store_one_object_per_segment_exactly_once_across_a_kill(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, workers: int
) -> None:
    """With ``--workers 2`` the committer is the store's one writer: S3 needs no lock."""
    from tests.e2e.test_collector_faults import collect_uri
    from tests.helpers.moto_s3 import moto_s3

    with moto_s3(monkeypatch) as s3:
        bucket = f"feedback-{workers}-workers"  # the moto server is shared: a bucket of its own
        s3.create_bucket(Bucket=bucket)
        args = ("--workers", str(workers))
        process = CollectorProcess(tmp_path, *args, store_uri=f"s3://{bucket}/loops")
        process.start()
        try:
            first = jsonl(*[good(i) for i in range(30)])
            assert post(process, first)[1] == {"accepted": 30, "duplicates": 0}
            assert post(process, first)[1] == {"accepted": 0, "duplicates": 30}
            process.kill()
            process.start()  # a new process: the ids come back from the segments in S3
            again = jsonl(*[good(i) for i in range(20, 50)])
            assert post(process, again)[1] == {"accepted": 20, "duplicates": 10}
        finally:
            process.stop()
        prefix = "loops/default/support/"
        listed = s3.list_objects_v2(Bucket=bucket, Prefix=prefix)["Contents"]
        keys = [o["Key"] for o in listed]
        assert len(keys) == 2 and all("/collector/" in k and k.endswith(".jsonl") for k in keys)
        _, records = collect_uri(
            tmp_path, f"s3://{bucket}/loops/default/support", f"s3://{bucket}/out/c1"
        )
        prompts = sorted(r["instruction"] for r in records)
        assert prompts == sorted(f"question {i}" for i in range(50))


def test_the_example_script_posts_feedback_into_the_loops_prefix(tmp_path: Path) -> None:
    """examples/feedback-local: the collector with the example's tokens, its post script."""
    from tests.e2e.test_collector_faults import collect_uri

    example = Path(__file__).resolve().parents[2] / "examples" / "feedback-local"
    feedback = tmp_path / "data" / "feedback"
    process = CollectorProcess(tmp_path, store_uri=f"file://{feedback / 'collected'}")
    process.tokens = example / "data" / "collector.tokens"
    process.start()
    try:
        script = [sys.executable, str(example / "post_feedback.py"), "--url", process.url]
        first = subprocess.run(script, capture_output=True, text=True, timeout=60)
        assert first.returncode == 0, first.stderr
        assert "60 new, 0 already there" in first.stdout
        again = subprocess.run(script, capture_output=True, text=True, timeout=60)
        assert "0 new, 60 already there" in again.stdout
    finally:
        process.stop()
    result, records = collect_uri(tmp_path, f"file://{feedback}", f"file://{tmp_path / 'c1'}")
    assert result["metrics"]["newLines"] == 60 and len(records) == 60
    assert all(
        r["feedback_source"].startswith("collected/default/support-assistant-loop/collector/")
        for r in records
    )
