"""Bearer tokens, each bound to FeedbackLoops, read from a file (a mounted Secret).

The file is YAML or JSON: a list of ``{name, token, loops}`` where ``loops`` are
``NAMESPACE/LOOP`` patterns (``team-a/*``, ``*/*``). ``name`` identifies the client in logs and
metrics; the token itself is never logged: only its SHA-256 is kept in memory, compared in
constant time. The file is re-read when it changes (a rotated Secret), at most every few
seconds.
"""

from __future__ import annotations

import contextlib
import fnmatch
import hashlib
import hmac
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import yaml

RELOAD_SECONDS = 5.0


@dataclass(frozen=True)
class Client:
    """One token's owner and the loops it may write to."""

    name: str
    digest: bytes
    loops: tuple[str, ...]

    def may_write(self, namespace: str, loop: str) -> bool:
        target = f"{namespace}/{loop}"
        return any(fnmatch.fnmatchcase(target, pattern) for pattern in self.loops)


class TokenFileError(ValueError):
    """The token file is not a list of {name, token, loops}."""


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8")).digest()


def parse_tokens(text: str) -> list[Client]:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:  # its message would quote the file: tokens
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise TokenFileError(f"the tokens file is not valid YAML{where}") from None
    if isinstance(data, dict) and "tokens" in data:
        data = data["tokens"]
    if not isinstance(data, list):
        raise TokenFileError("expected a list of {name, token, loops}")
    clients = []
    for i, entry in enumerate(data):
        if not isinstance(entry, dict):
            raise TokenFileError(f"entry {i}: expected an object")
        token, loops = entry.get("token"), entry.get("loops")
        name = entry.get("name") or f"client-{i}"
        if not isinstance(token, str) or len(token) < 8:
            raise TokenFileError(f"entry {i} ({name}): token must be a string of >= 8 chars")
        if not isinstance(loops, list) or not all(isinstance(p, str) and p for p in loops):
            raise TokenFileError(f"entry {i} ({name}): loops must list NAMESPACE/LOOP patterns")
        clients.append(Client(str(name), _digest(token), tuple(loops)))
    return clients


Verdict = Literal["ok", "unauthenticated", "forbidden"]


class TokenStore:
    """Checks ``Authorization: Bearer`` headers against the token file."""

    def __init__(self, path: Path | None, clients: list[Client] | None = None) -> None:
        self.path = path
        self._clients = clients or []
        self._stamp: tuple[float, int] | None = None
        self._checked = 0.0
        if path is not None:
            self._load()

    def _load(self) -> None:
        assert self.path is not None
        stat = os.stat(self.path)
        stamp = (stat.st_mtime, stat.st_size)
        if stamp != self._stamp:
            self._clients = parse_tokens(self.path.read_text(encoding="utf-8"))
            self._stamp = stamp

    def _refresh(self) -> None:
        now = time.monotonic()
        if self.path is None or now - self._checked < RELOAD_SECONDS:
            return
        self._checked = now
        # keep the tokens we have on errors: a Secret being rotated may be half-written
        with contextlib.suppress(OSError, ValueError, yaml.YAMLError):
            self._load()

    def check(self, header: str | None, namespace: str, loop: str) -> tuple[Verdict, Client | None]:
        self._refresh()
        if not header or not header.startswith("Bearer "):
            return "unauthenticated", None
        digest = _digest(header[len("Bearer ") :].strip())
        client = None
        for candidate in self._clients:
            if hmac.compare_digest(candidate.digest, digest):
                client = candidate
        if client is None:
            return "unauthenticated", None
        if not client.may_write(namespace, loop):
            return "forbidden", client
        return "ok", client
