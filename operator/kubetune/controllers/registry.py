"""The operator's kopf registry: login, settings at startup, shared clients, indexes, loops,
wake-ups.

:func:`build_registry` returns a fresh ``kopf.OperatorRegistry`` so the same operator runs under
``kopf run`` (:func:`kubetune.controllers.main.run_operator`) and in tests
(``kopf.testing.KopfRunner``) without global state. It logs in by itself: its login handler
loads the credentials of ``access`` (:mod:`kubetune.controllers.credentials`) for kopf's watches,
and the controllers' own calls use the same loader (:class:`kubetune.controllers.kube.Api`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import aiohttp
import kopf

from kubetune.api.common import GROUP
from kubetune.api.kinds import per_kind
from kubetune.controllers import compression, dataset, evaluation, feedback, finetune, metrics
from kubetune.controllers.base import KindController
from kubetune.controllers.cache import register_child_indexes, register_indexes
from kubetune.controllers.credentials import KubeAccess, connection_info, load
from kubetune.controllers.kube import Api
from kubetune.controllers.reconcile import Runtime, utc_now
from kubetune.controllers.reconcile_daemon import MEMO_KEY, Wakers, register_children, register_kind
from kubetune.plan.world import OperatorConfig

PREFIX = GROUP
FINALIZER = f"{PREFIX}/finalizer"

# The controllers layer's registration: one controller module per kind of kubetune.api.kinds.
BY_KIND: dict[str, KindController] = per_kind(
    "kubetune.controllers.registry.BY_KIND",
    {
        c.kind: c
        for c in (
            dataset.CONTROLLER,
            finetune.CONTROLLER,
            compression.CONTROLLER,
            evaluation.CONTROLLER,
            feedback.CONTROLLER,
        )
    },
)
CONTROLLERS: tuple[KindController, ...] = tuple(BY_KIND.values())


def configure(settings: kopf.OperatorSettings, posting_level: int = logging.WARNING) -> None:
    """Project-prefixed names and the posting level (kopf's own messages as Events)."""
    settings.persistence.finalizer = FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=PREFIX)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=PREFIX, key="last-handled-configuration"
    )
    settings.posting.level = posting_level


def build_registry(
    config: OperatorConfig,
    *,
    metrics_port: int | None = None,
    controllers: Sequence[KindController] = CONTROLLERS,
    posting_level: int = logging.WARNING,
    clock: Callable[[], datetime] = utc_now,
    access: KubeAccess = KubeAccess(),
) -> kopf.OperatorRegistry:
    """All handlers of the operator, configured by ``config``; ``clock`` is the planners' now;
    ``access`` says where the credentials come from."""
    registry = kopf.OperatorRegistry()
    by_kind = {c.kind: c for c in controllers}

    @kopf.on.login(registry=registry)
    async def login(logger: kopf.Logger, **_: Any) -> kopf.ConnectionInfo:
        found = await asyncio.to_thread(load, access)
        logger.info("logged in with the %s", found.source)
        return connection_info(found)

    @kopf.on.startup(registry=registry)
    async def startup(
        settings: kopf.OperatorSettings, memo: kopf.Memo, logger: kopf.Logger, **_: Any
    ) -> None:
        configure(settings, posting_level)
        runtime = Runtime(
            config=config,
            controllers=by_kind,
            api=Api(access),
            session=aiohttp.ClientSession(),
            clock=clock,
        )
        memo[MEMO_KEY] = (runtime, Wakers())
        if metrics_port:
            memo["kubetune_exporter"] = metrics.start_exporter(
                metrics_port, config.metrics_bind_address
            )
            logger.info("serving Prometheus metrics on port %d", metrics_port)

    @kopf.on.cleanup(registry=registry)
    async def cleanup(memo: kopf.Memo, **_: Any) -> None:
        state = memo.get(MEMO_KEY)
        if state is not None:
            state[0].api.close()
            if state[0].session is not None:
                await state[0].session.close()
        exporter = memo.get("kubetune_exporter")
        if exporter is not None:
            exporter.shutdown()
            exporter.server_close()

    register_child_indexes(registry)
    register_children(registry)
    for controller in controllers:
        register_indexes(registry, controller.kind)
        register_kind(registry, controller)
    return registry
