"""A local OpenAI-compatible ``/chat/completions`` stub for the judge tests.

Each request pops the next scripted reply (the last one repeats); every request is recorded
with its headers and JSON body.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Reply:
    """A scripted reply: status, body (dict -> JSON), headers, and a delay before answering."""

    body: Any = None
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


def completion(content: str) -> Reply:
    return Reply({"choices": [{"message": {"role": "assistant", "content": content}}]})


@dataclass
class Stub:
    url: str
    replies: list[Reply]
    requests: list[dict[str, Any]] = field(default_factory=list)


@contextmanager
def judge_stub(replies: list[Reply]) -> Iterator[Stub]:
    stub = Stub(url="", replies=list(replies))
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", 0))
            body = json.loads(self.rfile.read(length) or b"{}")
            with lock:
                stub.requests.append(
                    {"path": self.path, "headers": dict(self.headers), "body": body}
                )
                reply = stub.replies.pop(0) if len(stub.replies) > 1 else stub.replies[0]
            time.sleep(reply.delay)
            data = reply.body if isinstance(reply.body, bytes) else json.dumps(reply.body).encode()
            try:
                self.send_response(reply.status)
                for key, value in reply.headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (timeout test)

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    stub.url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield stub
    finally:
        server.shutdown()
        server.server_close()
