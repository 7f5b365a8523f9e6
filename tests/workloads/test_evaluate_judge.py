"""Evaluate step: the judge metric against a local OpenAI-compatible stub."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from kubetune.api.evaluation import JudgeSpec
from kubetune_workloads.errors import WorkloadError
from kubetune_workloads.evaluate import run
from kubetune_workloads.evaluate.judge import JudgeClient, RateLimiter

from tests.workloads.eval_fixtures.judge_stub import Reply, completion, judge_stub
from tests.workloads.eval_fixtures.models import uri
from tests.workloads.eval_fixtures.specs import domain_cases, step_spec

SECRET = "sk-test-very-secret-key"


def _client(url: str, **kw: object) -> JudgeClient:
    spec = JudgeSpec.model_validate(
        {"url": url, "model": "judge-1", "requestsPerSecond": 1000, "maxRetries": 2, **kw}
    )
    return JudgeClient(spec, SECRET)


@pytest.mark.parametrize(
    ("content", "score"),
    [('{"score": 8, "reason": "good"}', 8.0), ("7", 7.0), ("I'd give it 6/10.", 6.0)],
)
def test_judge_reads_the_score(content: str, score: float) -> None:
    with judge_stub([completion(content)]) as stub:
        verdict = _client(stub.url).grade("What is 2+2?", "4", "4")
    assert verdict.score == score and verdict.error is None
    request = stub.requests[0]
    assert request["path"] == "/v1/chat/completions"
    assert request["headers"]["Authorization"] == f"Bearer {SECRET}"
    assert request["body"]["model"] == "judge-1"
    user = request["body"]["messages"][-1]["content"]
    assert "What is 2+2?" in user and "REFERENCE ANSWER" in user


def test_judge_retries_malformed_replies_then_succeeds() -> None:
    replies = [Reply(b"not json"), completion("no number here"), completion('{"score": 9}')]
    with judge_stub(replies) as stub:
        verdict = _client(stub.url).grade("p", "o")
    assert verdict.score == 9.0 and verdict.attempts == 3


def test_judge_gives_up_on_persistently_malformed_replies() -> None:
    with judge_stub([Reply({"choices": []})]) as stub:
        verdict = _client(stub.url, maxRetries=1).grade("p", "o")
    assert verdict.score is None and "malformed reply" in (verdict.error or "")
    assert len(stub.requests) == 2


def test_judge_retries_429_and_5xx() -> None:
    replies = [Reply({}, 429, {"Retry-After": "0"}), Reply({}, 503), completion("5")]
    with judge_stub(replies) as stub:
        verdict = _client(stub.url).grade("p", "o")
    assert verdict.score == 5.0 and len(stub.requests) == 3


def test_judge_timeouts_are_retried_then_reported() -> None:
    with judge_stub([Reply(completion("5").body, delay=1.0)]) as stub:
        verdict = _client(stub.url, timeoutSeconds=0.2, maxRetries=1).grade("p", "o")
    assert verdict.score is None and "timed out" in (verdict.error or "")
    assert len(stub.requests) == 2


def test_judge_client_error_is_not_retried() -> None:
    with judge_stub([Reply({"error": "bad"}, 400)]) as stub:
        verdict = _client(stub.url).grade("p", "o")
    assert verdict.score is None and verdict.error == "HTTP 400" and len(stub.requests) == 1


def test_judge_unauthorized_stops_the_run() -> None:
    with judge_stub([Reply({"error": "no"}, 401)]) as stub, pytest.raises(WorkloadError) as info:
        _client(stub.url).grade("p", "o")
    assert info.value.reason == "JudgeUnauthorized" and SECRET not in info.value.message


def test_rate_limiter_spaces_requests() -> None:
    now = [0.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    limiter = RateLimiter(4.0, clock=lambda: now[0], sleep=sleep)
    for _ in range(3):
        limiter.wait()
    assert slept == [pytest.approx(0.25), pytest.approx(0.25)]


def test_judge_metric_in_an_evaluation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JUDGE_KEY", SECRET)
    replies = [completion('{"score": 8}'), Reply(b"garbage"), completion("6"), completion("7")]
    out = tmp_path / "eval"
    with judge_stub(replies) as stub:
        spec = step_spec(
            out,
            uri("tuned"),
            cases=domain_cases()[:4],
            metrics=["judge", "exactMatch"],
            spec={
                "judge": {
                    "url": stub.url,
                    "model": "judge-1",
                    "maxRetries": 0,
                    "requestsPerSecond": 1000,
                },
                "gates": [{"metric": "judge", "min": 6}],
            },
            judgeApiKeyEnv="JUDGE_KEY",
        )
        result = run(spec)
    assert result.ok and result.passed
    assert result.metrics["judge"] == pytest.approx((8 + 6 + 7) / 3)  # one case had no verdict
    assert "1 judge errors" in result.message
    rows = [json.loads(line) for line in (out / "cases.jsonl").read_text().splitlines()]
    assert sum("judgeError" in r["candidate"] for r in rows) == 1
    for name in ("results.json", "cases.jsonl", "report.html", "kubetune-manifest.json"):
        assert SECRET not in (out / name).read_text()
