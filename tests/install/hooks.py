"""Hold an API request at a precise point, so a test can kill the client right there.

The emulator's :class:`~tests.emulator.Faults` answer requests with canned errors; killing an
operator *between* two of its calls needs more: the request must wait until the test has
killed the process, and then either never happen (``fail``: answered 503, nothing stored) or
happen with nobody left to read the answer (``after`` the commit)::

    hooks = RequestHooks.install(emu)
    held = hooks.hold("POST", "jobs.batch", when="before", match=lambda body: ...)
    held.wait_reached(timeout=60)      # the operator is about to create the Job
    operator.kill()                    # SIGKILL while the request is in flight
    held.release()                     # answered 503: the Job was never created

:meth:`RequestHooks.install` swaps the running server's class for a subclass (same slots, one
overridden coroutine), so it works on any emulator started by ``start_emulator``. A hold
matches once; requests of other clients and other resources pass untouched.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from tests.emulator import ApiError, ApiServer, Emulator

Match = Callable[[Any], bool]


@dataclass(eq=False)
class Hold:
    """One held request (see the module docstring)."""

    method: str
    resource: (
        str  # group_resource, e.g. "jobs.batch", "deployments.apps", "finetunejobs.kubetune.dev"
    )
    when: str  # "before" (nothing stored yet) or "after" (stored, the answer not yet sent)
    namespace: str | None = None
    name: str | None = None
    subresource: str | None = None
    match: Match | None = None
    reached_event: threading.Event = field(default_factory=threading.Event)
    released_event: threading.Event = field(default_factory=threading.Event)
    fail: bool = True
    body: Any = None
    path: str = ""

    def matches(self, method: str, resource: str, route: Any, body: Any) -> bool:
        if self.reached_event.is_set() or method.upper() != self.method.upper():
            return False
        if resource != self.resource:
            return False
        if self.namespace is not None and route.namespace != self.namespace:
            return False
        if self.name is not None and route.name != self.name:
            return False
        if self.subresource is not None and (route.subresource or "") != self.subresource:
            return False
        return self.match is None or bool(self.match(body))

    def wait_reached(self, timeout: float) -> Any:
        """Wait until the request arrives; return its (parsed) body."""
        if not self.reached_event.wait(timeout):
            raise TimeoutError(f"no {self.method} {self.resource} arrived in {timeout:g}s")
        return self.body

    @property
    def reached(self) -> bool:
        return self.reached_event.is_set()

    def release(self, *, fail: bool = True) -> None:
        """Let the request go: answered 503 (``fail``) or served (a ``before`` hold only)."""
        self.fail = fail
        self.released_event.set()

    async def _wait(self) -> None:
        while not self.released_event.is_set():
            await asyncio.sleep(0.01)


class RequestHooks:
    """The holds of one emulator."""

    _by_server: ClassVar[dict[int, RequestHooks]] = {}

    def __init__(self, emulator: Emulator) -> None:
        self.emulator = emulator
        self._lock = threading.Lock()
        self.holds: list[Hold] = []

    @classmethod
    def install(cls, emulator: Emulator) -> RequestHooks:
        server = emulator.server
        existing = cls._by_server.get(id(server))
        if existing is not None:
            return existing
        hooks = cls(emulator)
        cls._by_server[id(server)] = hooks
        server.__class__ = _hooked_class(type(server))
        return hooks

    def hold(
        self,
        method: str,
        resource: str,
        *,
        when: str = "before",
        namespace: str | None = None,
        name: str | None = None,
        subresource: str | None = None,
        match: Match | None = None,
    ) -> Hold:
        if when not in ("before", "after"):
            raise ValueError("when is 'before' or 'after'")
        group_resource = self.emulator.resource(resource).group_resource
        hold = Hold(method, group_resource, when, namespace, name, subresource, match)
        with self._lock:
            self.holds.append(hold)
        return hold

    def release_all(self) -> None:
        with self._lock:
            for hold in self.holds:
                hold.release()

    def _take(self, method: str, resource: str, route: Any, body: bytes) -> Hold | None:
        try:
            parsed = json.loads(body) if body else None
        except ValueError:
            parsed = None
        with self._lock:
            for hold in self.holds:
                if hold.matches(method, resource, route, parsed):
                    hold.body = parsed
                    return hold
        return None


_CLASSES: dict[type, type] = {}


def _hooked_class(base: type[ApiServer]) -> type:
    if base in _CLASSES or getattr(base, "_kubetune_hooked", False):
        return _CLASSES.get(base, base)

    async def _dispatch(self: ApiServer, *args: Any, **kwargs: Any) -> Any:
        raw_request, spec, route = args[0], args[1], args[2]
        body = args[4] if len(args) > 4 else kwargs.get("body", b"")
        hooks = RequestHooks._by_server.get(id(self))
        hold = hooks._take(raw_request.method, spec.group_resource, route, body) if hooks else None
        if hold is not None and hold.when == "before":
            hold.path = raw_request.path
            hold.reached_event.set()
            await hold._wait()
            if hold.fail:
                raise ApiError(503, "ServiceUnavailable", "the request was held and dropped")
        response = await base._dispatch(self, *args, **kwargs)
        if hold is not None and hold.when == "after":
            hold.path = raw_request.path
            hold.reached_event.set()
            await hold._wait()
        return response

    hooked = type(
        f"Hooked{base.__name__}",
        (base,),
        {"__slots__": (), "_dispatch": _dispatch, "_kubetune_hooked": True},
    )
    _CLASSES[base] = hooked
    return hooked
