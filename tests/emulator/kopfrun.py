"""
Running a kopf operator against the emulator with ``kopf.testing.KopfRunner``.

:func:`run_kopf` wires a kopf ``OperatorRegistry`` to an :class:`Emulator`
(a login handler returning the emulator's connection info, unless the
registry logs in by itself, as kubetune's does from a kubeconfig), runs kopf in
``--standalone`` mode (no peering) in a thread, and restores kopf's global
default registry afterwards (``kopf run`` replaces it process-wide).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import kopf
from kopf.testing import KopfRunner

from tests.emulator.harness import Emulator


def fast_settings() -> kopf.OperatorSettings:
    """kopf settings suited for tests: quick reconnects & short timeouts."""
    settings = kopf.OperatorSettings()
    settings.watching.reconnect_backoff = 0.05
    settings.watching.inactivity_timeout = 30
    settings.networking.request_timeout = 5
    settings.networking.error_backoffs = [0.05, 0.1, 0.2]
    settings.queueing.idle_timeout = 0.5
    settings.queueing.exit_timeout = 1
    settings.queueing.error_delays = [0.1, 0.2, 0.5]
    settings.persistence.consistency_timeout = 2
    return settings


@contextlib.contextmanager
def run_kopf(
    emulator: Emulator,
    registry: kopf.OperatorRegistry,
    *,
    namespace: str | None = "default",
    settings: kopf.OperatorSettings | None = None,
    extra_args: Sequence[str] = (),
    timeout: float = 15.0,
    login: bool = True,
) -> Iterator[KopfRunner]:
    """
    Run the operator of ``registry`` against ``emulator`` while the block runs.

    ``namespace=None`` runs cluster-wide (``-A``). The runner's output & exit
    code are available after the block (``runner.output``, ``runner.exit_code``);
    exceptions of the operator are re-raised at exit. ``login=False``: the registry
    brings its own login handler (the test supplies no credentials to it).
    """

    def login_to_emulator(**_: Any) -> kopf.ConnectionInfo:
        info: kopf.ConnectionInfo = emulator.connection_info(namespace or "default")
        return info

    if login:
        kopf.on.login(registry=registry)(login_to_emulator)
    args = ["run", "--standalone", "--verbose", *(["-n", namespace] if namespace else ["-A"])]
    previous = kopf.get_default_registry()
    try:
        with KopfRunner(
            [*args, *extra_args],
            registry=registry,
            settings=settings or fast_settings(),
            timeout=timeout,
        ) as runner:
            yield runner
    finally:
        kopf.set_default_registry(previous)
