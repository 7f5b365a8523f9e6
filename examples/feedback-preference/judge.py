"""A rule-based, OpenAI-compatible judge for the feedback-preference example (stdlib only).

It answers ``POST /v1/chat/completions`` as kubetune's win-rate metric asks a judge: the
answer that contains the preferred word (default ``blue``, what the users' feedback prefers)
wins; both or neither is a tie. Any real judge endpoint (an LLM behind an OpenAI-compatible
API) replaces it by changing ``evaluation.judge.url``.

    python examples/feedback-preference/judge.py --port 8765
"""

from __future__ import annotations

import argparse
import json
import re
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

ANSWERS = re.compile(r"ANSWER A:\n(.*)\n\nANSWER B:\n(.*)", re.DOTALL)


def verdict(content: str, preferred: str) -> str:
    """A, B or tie for one judge prompt."""
    found = ANSWERS.search(content)
    if found is None:
        return "tie"
    a_ok, b_ok = (preferred in found.group(i).lower() for i in (1, 2))
    return "tie" if a_ok == b_ok else "A" if a_ok else "B"


def make_server(port: int, preferred: str = "blue") -> ThreadingHTTPServer:
    """The judge on 127.0.0.1:``port`` (0: a free port), not yet serving."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            winner = verdict(str(body["messages"][-1]["content"]), preferred)
            content = json.dumps({"winner": winner, "reason": f"prefers '{preferred}'"})
            data = json.dumps({"choices": [{"message": {"content": content}}]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            return

    return ThreadingHTTPServer(("127.0.0.1", port), Handler)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--prefer", default="blue")
    args = parser.parse_args()
    make_server(args.port, args.prefer).serve_forever()
