"""Live progress of a running step, served on the pod's metrics port and to the local runtime.

``GET /metrics`` returns Prometheus text, ``GET /progress`` the JSON view
(:class:`kubetune.api.steps.LiveProgress`). When ``KUBETUNE_PROGRESS_FILE`` is set (the local
runtime does this), every update is also written atomically to that file.
"""

from __future__ import annotations

import json
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from kubetune.api.contract import PROGRESS_FILE_ENV
from kubetune.api.steps import LiveProgress


class ProgressReporter:
    """Thread-safe holder of the latest progress, with optional HTTP server and file sink."""

    def __init__(self, step: str, port: int | None = None) -> None:
        self.step = step
        self._lock = threading.Lock()
        self._progress = LiveProgress(phase="Starting")
        self._started = time.monotonic()
        self._file = (
            Path(os.environ[PROGRESS_FILE_ENV]) if os.environ.get(PROGRESS_FILE_ENV) else None
        )
        self._server: ThreadingHTTPServer | None = None
        if port:
            self._serve(port)

    def update(self, **fields: Any) -> None:
        with self._lock:
            data = self._progress.model_dump()
            data.update({k: v for k, v in fields.items() if v is not None or k in data})
            step, total = data.get("step") or 0, data.get("total_steps")
            if total and step:
                elapsed = time.monotonic() - self._started
                data["eta_seconds"] = max(0.0, elapsed / step * (total - step))
            self._progress = LiveProgress.model_validate(data)
            snapshot = self._progress
        if self._file is not None:
            tmp = self._file.with_suffix(".tmp")
            tmp.write_text(snapshot.model_dump_json(by_alias=True, exclude_none=True))
            tmp.replace(self._file)

    def snapshot(self) -> LiveProgress:
        with self._lock:
            return self._progress

    def prometheus_text(self) -> str:
        p = self.snapshot()
        lines = []
        for name, value in (
            ("step", p.step),
            ("total_steps", p.total_steps),
            ("epoch", p.epoch),
            ("loss", p.loss),
            ("learning_rate", p.learning_rate),
            ("tokens_per_second", p.tokens_per_second),
            ("eta_seconds", p.eta_seconds),
        ):
            if value is not None:
                lines.append(f"# TYPE kubetune_workload_{name} gauge")
                lines.append(f'kubetune_workload_{name}{{step="{self.step}"}} {float(value)}')
        return "\n".join(lines) + "\n"

    def _serve(self, port: int) -> None:
        reporter = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.startswith("/metrics"):
                    body, ctype = reporter.prometheus_text().encode(), "text/plain; version=0.0.4"
                elif self.path.startswith("/progress"):
                    body = json.dumps(
                        reporter.snapshot().model_dump(
                            mode="json", by_alias=True, exclude_none=True
                        )
                    ).encode()
                    ctype = "application/json"
                else:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                return

        self._server = ThreadingHTTPServer(("0.0.0.0", port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def __enter__(self) -> ProgressReporter:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
