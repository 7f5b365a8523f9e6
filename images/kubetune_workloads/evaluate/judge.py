"""The judge metric: an OpenAI-compatible ``/chat/completions`` endpoint grades each output.

The judge receives the rubric, the prompt, the reference answer (when there is one) and the
output, and must answer with a number (``{"score": 7}`` or just ``7``). Requests are
rate-limited on the client side and retried on timeouts, connection errors, 429, 5xx and
malformed replies, with exponential backoff (``Retry-After`` is honoured). A case whose
grading still fails gets no judge score and its error is recorded; 401/403 stop the run. The
API key comes from an environment variable and never appears in logs or results.
"""

from __future__ import annotations

import json
import re
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kubetune.api.evaluation import JudgeSpec

from kubetune_workloads.errors import WorkloadError

SYSTEM_PROMPT = (
    "You are a strict evaluator. Grade the ANSWER to the PROMPT using this rubric:\n{rubric}\n"
    'Reply with JSON only: {{"score": <number>, "reason": "<one sentence>"}}.'
)
BACKOFF_SECONDS = 0.25
MAX_BACKOFF_SECONDS = 30.0
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


@dataclass
class Verdict:
    """A judge's score for one output, or the error that prevented it."""

    score: float | None
    error: str | None = None
    attempts: int = 0


class MalformedReply(Exception):
    """The endpoint answered, but not with a usable score."""


class RateLimiter:
    """Spaces request starts at least ``1 / rate`` seconds apart (thread-safe)."""

    def __init__(
        self,
        rate: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.interval = 1.0 / rate
        self.clock, self.sleep = clock, sleep
        self._next = 0.0
        self._lock = threading.Lock()

    def wait(self) -> None:
        with self._lock:
            now = self.clock()
            start = max(now, self._next)
            self._next = start + self.interval
        if start > now:
            self.sleep(start - now)


def reply_text(body: bytes) -> tuple[str, Any]:
    """A chat-completions reply's message text without a code fence, and that text as JSON.

    The JSON is None when the text is not JSON; MalformedReply when the body is not a chat
    completion with text content.
    """
    try:
        content = json.loads(body)["choices"][0]["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        raise MalformedReply(f"not a chat completion ({type(exc).__name__})") from exc
    if not isinstance(content, str):
        raise MalformedReply("message content is not text")
    text = content.strip().removeprefix("```json").removeprefix("```").removesuffix("```")
    try:
        return text, json.loads(text)
    except ValueError:
        return text, None


def parse_score(body: bytes) -> float:
    """The score in a chat-completions reply; MalformedReply when there is none."""
    text, data = reply_text(body)
    if isinstance(data, dict) and isinstance(data.get("score"), int | float):
        return float(data["score"])
    if isinstance(data, int | float) and not isinstance(data, bool):
        return float(data)
    match = _NUMBER.search(text)
    if match is None:
        raise MalformedReply("the judge's reply holds no score")
    return float(match.group())


class JudgeClient:
    """Grades outputs against the rubric through the judge endpoint."""

    def __init__(
        self,
        spec: JudgeSpec,
        api_key: str | None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.spec = spec
        self.endpoint = spec.url.rstrip("/") + "/chat/completions"
        self._api_key = api_key
        self._sleep = sleep
        self._limiter = RateLimiter(spec.requests_per_second, sleep=sleep)

    def messages(self, prompt: str, output: str, reference: str | None) -> list[dict[str, str]]:
        user = f"PROMPT:\n{prompt}\n\n"
        if reference:
            user += f"REFERENCE ANSWER:\n{reference}\n\n"
        user += f"ANSWER:\n{output}"
        return [
            {"role": "system", "content": SYSTEM_PROMPT.format(rubric=self.spec.rubric)},
            {"role": "user", "content": user},
        ]

    def grade(self, prompt: str, output: str, reference: str | None = None) -> Verdict:
        """Score one output; retried up to ``maxRetries`` times."""
        value, error, attempts = self.ask(self.messages(prompt, output, reference), parse_score)
        return Verdict(score=value, error=error, attempts=attempts)

    def ask(
        self, messages: list[dict[str, str]], parse: Callable[[bytes], Any]
    ) -> tuple[Any, str | None, int]:
        """One judge request, retried; (parsed reply or None, error, attempts)."""
        body = json.dumps(
            {"model": self.spec.model, "messages": messages, "temperature": 0}
        ).encode()
        error = "no attempt made"
        for attempt in range(self.spec.max_retries + 1):
            if attempt:
                self._sleep(self._backoff(attempt, error))
            self._limiter.wait()
            try:
                return parse(self._post(body)), None, attempt + 1
            except MalformedReply as exc:
                error = f"malformed reply: {exc}"
            except urllib.error.HTTPError as exc:
                if exc.code in (401, 403):
                    raise WorkloadError(
                        "JudgeUnauthorized",
                        f"the judge at {self.spec.url} refused the request (HTTP {exc.code}); "
                        "check the API key Secret",
                    ) from exc
                retry_after = exc.headers.get("Retry-After") if exc.headers else None
                error = f"HTTP {exc.code}" + (f" retry-after={retry_after}" if retry_after else "")
                if exc.code != 429 and exc.code < 500:
                    return None, error, attempt + 1
            except TimeoutError:
                error = f"timed out after {self.spec.timeout_seconds:g}s"
            except (urllib.error.URLError, OSError) as exc:
                reason = getattr(exc, "reason", exc)
                error = (
                    f"timed out after {self.spec.timeout_seconds:g}s"
                    if isinstance(reason, TimeoutError)
                    else f"connection error: {reason}"
                )
        return None, error, self.spec.max_retries + 1

    def _post(self, body: bytes) -> bytes:
        headers = {"Content-Type": "application/json"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        request = urllib.request.Request(self.endpoint, data=body, headers=headers, method="POST")
        with urllib.request.urlopen(request, timeout=self.spec.timeout_seconds) as response:
            data: bytes = response.read()
            return data

    @staticmethod
    def _backoff(attempt: int, error: str) -> float:
        match = re.search(r"retry-after=(\d+(?:\.\d+)?)", error)
        if match:
            return min(float(match.group(1)), MAX_BACKOFF_SECONDS)
        return min(BACKOFF_SECONDS * 2.0 ** (attempt - 1), MAX_BACKOFF_SECONDS)
