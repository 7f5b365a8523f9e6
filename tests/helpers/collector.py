"""The real ``kubetune collector`` process on 127.0.0.1, for tests and benchmarks."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

TOKEN = "tok-app-0123456789"
OTHER_TOKEN = "tok-other-0123456789"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def stored_ids(root: Path) -> list[str]:
    """The record ids of every line of the segments under ``root``, segment by segment."""
    return [
        json.loads(line)["id"]
        for segment in sorted(root.rglob("*.jsonl"))
        for line in segment.read_bytes().splitlines()
    ]


def write_tokens(path: Path) -> Path:
    path.write_text(
        f"- name: app\n  token: {TOKEN}\n  loops: [default/*]\n"
        f"- name: other\n  token: {OTHER_TOKEN}\n  loops: [team-b/support]\n"
    )
    return path


class CollectorProcess:
    """Starts, kills and restarts one collector on a fixed port."""

    def __init__(
        self,
        workdir: Path,
        *extra: str,
        port: int | None = None,
        store_uri: str | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.workdir = workdir
        self.env = {**os.environ, **env} if env else None
        self.store = workdir / "store"
        self.store_uri = store_uri or f"file://{self.store}"
        self.tokens = write_tokens(workdir / "tokens.yaml")
        self.port = port or free_port()
        self.extra = extra
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = workdir / "collector.log"
        self.starts = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> None:
        command = [
            sys.executable,
            "-m",
            "kubetune.cli",
            "collector",
            "--store",
            self.store_uri,
            "--tokens",
            str(self.tokens),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            *self.extra,
        ]
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, env=self.env
            )
        self.starts += 1
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"collector exited: {self.log.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/healthz", timeout=1) as response:
                    if response.status == 200:
                        return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("collector did not become healthy")

    def kill(self) -> None:
        """SIGKILL: no clean shutdown, whatever was in flight is cut."""
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def workers(self) -> list[int]:
        """The pids of the worker processes of a ``--workers N`` collector (Linux)."""
        assert self.proc is not None
        pid = self.proc.pid
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]

    def committer(self) -> int:
        """The pid of the committer of a ``--workers N`` collector (as its log says)."""
        found = re.findall(r"collector committer \(pid (\d+)\)", self.log.read_text())
        pids = set(self.workers())
        running = [int(pid) for pid in found if int(pid) in pids]
        assert running, "no committer is running"
        return running[-1]

    def kill_worker(self) -> int:
        """SIGKILL one HTTP worker of several (the supervisor starts another); its pid."""
        victim = next(pid for pid in self.workers() if pid != self.committer())
        os.kill(victim, signal.SIGKILL)
        return victim

    def kill_committer(self) -> int:
        """SIGKILL the committer of several workers (the supervisor starts another); its pid."""
        victim = self.committer()
        os.kill(victim, signal.SIGKILL)
        return victim

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def row(record_id: str) -> dict[str, Any]:
    """A valid record (prompt and response) with the id ``record_id``."""
    return {"id": record_id, "prompt": f"question {record_id}", "response": f"answer {record_id}"}


def post(process: CollectorProcess, ids: list[str], loop: str = "loop") -> tuple[int, Any]:
    """POST one JSONL batch of a record per id to ``default/<loop>``: (status, JSON answer)."""
    rows = [row(i) for i in ids]
    request = urllib.request.Request(
        f"{process.url}/v1/feedback/default/{loop}",
        data="".join(json.dumps(row) + "\n" for row in rows).encode(),
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/x-ndjson"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def run_collect(
    workdir: Path, source: str, output: str, since: str | None = None, name: str = "c1"
) -> dict[str, Any]:
    """The loop's collect step, ``python -m kubetune_workloads feedback`` in collect mode, from
    ``source`` into ``output`` (beyond the cursor ``since``); returns its result."""
    spec = {
        "step": "feedback",
        "producer": {"kind": "FeedbackLoop", "name": "loop", "namespace": "default", "runId": name},
        "outputUri": output,
        "mode": "collect",
        "source": {"uri": source},
        "sinceCursorUri": since,
        "recordSchema": "instruction",
    }
    spec_file = workdir / f"{name}.json"
    spec_file.write_text(json.dumps(spec))
    result_file = workdir / f"{name}.result"
    done = subprocess.run(
        [sys.executable, "-m", "kubetune_workloads", "feedback", "--spec", str(spec_file)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "KUBETUNE_TERMINATION_LOG": str(result_file)},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result: dict[str, Any] = json.loads(result_file.read_text())
    return result
