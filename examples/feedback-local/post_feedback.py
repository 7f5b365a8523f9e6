#!/usr/bin/env python3
"""Post a batch of user feedback to a running `kubetune collector`, as an application would.

The records are those of data/generate_feedback.py (60 per batch, 52 usable), each with a stable
id (``batch-N-I``): posting the same batch twice stores it once. They are sent in JSONL chunks;
a 429 or 503 (the store lags or failed) or a lost connection is retried after a pause, which is
safe because of the ids. Only the standard library is used.

    kubetune collector --store file://examples/feedback-local/data/feedback \\
        --tokens examples/feedback-local/data/collector.tokens --port 8080 &
    python examples/feedback-local/post_feedback.py --batch 2
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "data"))

from generate_feedback import records  # noqa: E402

TOKEN = "example-app-token"  # the one in data/collector.tokens; never do this in production


def post(url: str, token: str, body: bytes) -> dict[str, object]:
    for attempt in range(10):
        request = urllib.request.Request(
            url,
            data=body,
            method="POST",
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/x-ndjson"},
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                answer: dict[str, object] = json.loads(response.read())
                return answer
        except urllib.error.HTTPError as exc:
            if exc.code not in (429, 503):
                raise SystemExit(f"{exc.code}: {exc.read().decode(errors='replace')}") from exc
            time.sleep(float(exc.headers.get("Retry-After") or 1))
        except urllib.error.URLError as exc:
            print(f"retrying after {exc.reason} (attempt {attempt + 1})", file=sys.stderr)
            time.sleep(1)
    raise SystemExit("the collector did not acknowledge the feedback")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8080")
    parser.add_argument("--loop", default="default/support-assistant-loop", help="NS/NAME")
    parser.add_argument("--batch", type=int, default=2, help="generator batch (batch 1 ships)")
    parser.add_argument("--chunk", type=int, default=20, help="records per request")
    parser.add_argument("--token", default=TOKEN)
    args = parser.parse_args()
    rows = [
        {"id": f"batch-{args.batch}-{i}", **{k: v for k, v in row.items() if v is not None}}
        for i, row in enumerate(records(args.batch))
    ]
    url = f"{args.url}/v1/feedback/{args.loop}"
    accepted = duplicates = 0
    for start in range(0, len(rows), args.chunk):
        chunk = rows[start : start + args.chunk]
        answer = post(url, args.token, "".join(json.dumps(r) + "\n" for r in chunk).encode())
        accepted += int(answer["accepted"])  # type: ignore[call-overload]
        duplicates += int(answer["duplicates"])  # type: ignore[call-overload]
    print(f"{len(rows)} records posted to {args.loop}: {accepted} new, {duplicates} already there")


if __name__ == "__main__":
    main()
