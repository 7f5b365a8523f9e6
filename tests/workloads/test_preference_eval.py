"""Evaluation's pairwise win rate: candidate vs baseline judged by an OpenAI-compatible judge on
127.0.0.1, with position-swap debiasing and ties; gate-able with a bootstrap interval."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from kubetune_workloads.evaluate import run
from pydantic import ValidationError

from tests.workloads.eval_fixtures.judge_stub import completion, judge_stub
from tests.workloads.eval_fixtures.models import DOMAIN_QA, prompt, uri
from tests.workloads.eval_fixtures.specs import step_spec

EXPECTED = {prompt(q): a.lower() for q, a in DOMAIN_QA}
ANSWERS = re.compile(r"PROMPT:\n(.*)\n\nANSWER A:\n(.*)\n\nANSWER B:\n(.*)", re.DOTALL)


@contextmanager
def reference_judge() -> Iterator[str]:
    """A judge that prefers the answer containing the case's expected answer (tie: both or
    neither), as a careful human grader of these questions would."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            found = ANSWERS.search(body["messages"][-1]["content"])
            assert found is not None
            expected = EXPECTED[found.group(1)]
            a_ok, b_ok = (expected in found.group(i).lower() for i in (2, 3))
            winner = "tie" if a_ok == b_ok else "A" if a_ok else "B"
            reply = {"choices": [{"message": {"content": json.dumps({"winner": winner})}}]}
            data = json.dumps(reply).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()


def _spec(out: Path, candidate: str, baseline: str, judge_url: str) -> Any:
    return step_spec(
        out,
        candidate,
        baseline=baseline,
        metrics=["winRate", "exactMatch"],
        spec={
            "judge": {"url": judge_url, "model": "judge-1", "requestsPerSecond": 1000},
            "gates": [{"metric": "winRate", "min": 0.6}],
        },
    )


def test_win_rate_promotes_the_better_model_and_gates_the_worse(tmp_path: Path) -> None:
    with reference_judge() as url:
        better = run(_spec(tmp_path / "better", uri("tuned"), uri("base"), url))
        worse = run(_spec(tmp_path / "worse", uri("base"), uri("tuned"), url))
    assert better.passed and better.metrics["winRate"] >= 0.9
    assert worse.passed is False and worse.failed_gates == ["winRate>=0.6"]
    assert worse.metrics["winRate"] <= 0.1
    results = json.loads((tmp_path / "better" / "results.json").read_text())
    assert results["candidate"]["aggregates"]["winRate"]["n"] == len(DOMAIN_QA)


def test_position_swap_turns_a_position_biased_judge_into_ties(tmp_path: Path) -> None:
    with judge_stub([completion('{"winner": "A", "reason": "first is best"}')]) as stub:
        result = run(_spec(tmp_path / "eval", uri("tuned"), uri("base"), stub.url))
    assert result.metrics["winRate"] == 0.5 and result.passed is False
    orders = [r["body"]["messages"][-1]["content"] for r in stub.requests]
    assert len(orders) == 2 * len(DOMAIN_QA)
    first, second = ANSWERS.search(orders[0]), ANSWERS.search(orders[1])
    assert first and second and first.group(2) == second.group(3)  # same pair, swapped


def test_win_rate_needs_a_baseline_and_a_judge(tmp_path: Path) -> None:
    judge = {"judge": {"url": "http://127.0.0.1:9/v1", "model": "j"}}
    with pytest.raises(ValidationError, match="winRate metric needs a baseline"):
        step_spec(tmp_path / "eval", uri("tuned"), metrics=["winRate"], spec=judge)
    with pytest.raises(ValidationError, match="winRate metric needs a judge"):
        step_spec(tmp_path / "eval", uri("tuned"), baseline=uri("base"), metrics=["winRate"])
