"""
Running the API emulator in a background thread, with a thread-safe handle.

:func:`start_emulator` starts :class:`~tests.emulator.apiserver.ApiServer`
on 127.0.0.1 (a random port) in its own thread and event loop, so that it
serves sync tests, async tests (any loop), and kopf operators running in
``kopf.testing.KopfRunner`` threads alike. The yielded :class:`Emulator`
is the handle for tests: direct (non-HTTP) reads & writes of objects that
still bump resourceVersions and emit watch events, waiting helpers, fault
injection, the request log, and kopf connection/login helpers.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import pathlib
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import aiohttp.test_utils
import kmock

from tests.emulator.apiserver import (
    JSON_PATCH,
    MERGE_PATCH,
    AdmissionHook,
    ApiServer,
    Faults,
    Rejection,
    RequestRecord,
)
from tests.emulator.k8sutils import JsonDict, merge_patch
from tests.emulator.resources import ResourceSpec
from tests.emulator.tls import Certificates, make_certificates

Predicate = Callable[[JsonDict], Any]


class Emulator:
    """
    A handle to a running emulator. All methods are thread-safe and synchronous.

    They block only briefly (the emulator runs in its own thread & loop), so they
    are also safe to call from async tests and from kopf handlers.

    Resources are named as in kubectl: ``"pods"``, ``"jobs.batch"``, ``"Widget"``,
    ``"widgets.kubetune.dev"``, ``"kubetune.dev/v1/widgets"``.
    Direct writes skip the fault injection but otherwise behave as the HTTP API
    (resourceVersions, generations, finalizers, GC, watch events); they skip
    the admission hook unless ``admit=True``.
    """

    def __init__(
        self,
        server: ApiServer,
        url: str,
        *,
        ca_file: pathlib.Path | None = None,
        token: str | None = None,
    ) -> None:
        self.server = server
        self.url = url
        #: The CA certificate (PEM) that signed the server's certificate (``tls=True``).
        self.ca_file = ca_file
        #: The bearer token the server requires (``token=...``), if any.
        self.token = token

    # ---------------------------------------------------------------------------------------------
    # Basics

    @property
    def faults(self) -> Faults:
        """Fault injection: see :class:`tests.emulator.apiserver.Faults`."""
        return self.server.faults

    def resource(self, resource: str | ResourceSpec) -> ResourceSpec:
        """Resolve a resource name into the served :class:`ResourceSpec`."""
        return self.server.registry.resolve(resource)

    def call(self, fn: Callable[[ApiServer], Any]) -> Any:
        """Run ``fn(server)`` in the emulator's loop (for anything not covered here)."""
        return self.server.call(lambda: fn(self.server))

    def requests(self, verb: str | None = None, resource: str | None = None) -> list[RequestRecord]:
        """The resource requests served so far (optionally filtered by verb/method & resource)."""
        group_resource = self.resource(resource).group_resource if resource else None
        return [
            r
            for r in list(self.server.request_log)
            if (verb is None or verb.upper() in (r.method.upper(), r.verb.upper()))
            and (group_resource is None or r.resource == group_resource)
        ]

    @property
    def resource_version(self) -> int:
        """The current global resourceVersion."""
        return self.server.resource_version

    def warnings(self, resource: str | None = None) -> list[tuple[RequestRecord, str]]:
        """The warnings sent so far (``unknown field "spec.x"``: a field that was dropped)."""
        group_resource = self.resource(resource).group_resource if resource else None
        return [
            (request, warning)
            for request, warning in list(self.server.warning_log)
            if group_resource is None or request.resource == group_resource
        ]

    def rejections(self, resource: str | None = None) -> list[Rejection]:
        """The writes the emulator refused so far (400/404/415/422), optionally of a resource."""
        group_resource = self.resource(resource).group_resource if resource else None
        return [
            r
            for r in list(self.server.rejections)
            if group_resource is None or r.resource == group_resource
        ]

    # ---------------------------------------------------------------------------------------------
    # Reads

    def get(self, resource: str, namespace: str | None, name: str) -> JsonDict | None:
        """The object (a deep copy), or ``None`` if absent."""
        spec = self.resource(resource)
        return self.server.call(lambda: self.server.find_object(spec, namespace, name))

    def objects(
        self,
        resource: str,
        namespace: str | None = None,
        *,
        labels: str | None = None,
        fields: str | None = None,
    ) -> list[JsonDict]:
        """All objects of a resource (deep copies), sorted by namespace & name."""
        spec = self.resource(resource)
        return self.server.call(lambda: self.server.list_objects(spec, namespace, labels, fields))

    # ---------------------------------------------------------------------------------------------
    # Writes

    def create(
        self, resource: str, body: JsonDict, *, namespace: str | None = None, admit: bool = False
    ) -> JsonDict:
        """Create an object (namespace from the argument or from the body)."""
        spec = self.resource(resource)
        return self.server.call(
            lambda: self.server.create_object(spec, namespace, body, admit=admit)
        )

    def replace(
        self,
        resource: str,
        namespace: str | None,
        name: str,
        body: JsonDict,
        *,
        subresource: str | None = None,
        admit: bool = False,
    ) -> JsonDict:
        """Replace an object (``PUT`` semantics)."""
        spec = self.resource(resource)
        return self.server.call(
            lambda: self.server.replace_object(
                spec, namespace, name, body, subresource=subresource, admit=admit
            )
        )

    def patch(
        self,
        resource: str,
        namespace: str | None,
        name: str,
        patch: JsonDict | list[JsonDict],
        *,
        subresource: str | None = None,
        admit: bool = False,
    ) -> JsonDict:
        """Merge-patch an object (a list is treated as a JSON-patch)."""
        spec = self.resource(resource)
        patch_type = JSON_PATCH if isinstance(patch, list) else MERGE_PATCH
        return self.server.call(
            lambda: self.server.patch_object(
                spec,
                namespace,
                name,
                patch,
                patch_type=patch_type,
                subresource=subresource,
                admit=admit,
            )
        )

    def patch_status(
        self, resource: str, namespace: str | None, name: str, status: JsonDict
    ) -> JsonDict:
        """Merge-patch the status (via ``/status`` where the subresource exists)."""
        spec = self.resource(resource)
        sub = "status" if spec.status_subresource else None
        return self.patch(resource, namespace, name, {"status": status}, subresource=sub)

    def delete(
        self,
        resource: str,
        namespace: str | None,
        name: str,
        *,
        propagation: str = "Background",
    ) -> JsonDict:
        """Delete an object (finalizers & GC apply); return its last known state."""
        spec = self.resource(resource)
        options = {"propagationPolicy": propagation}
        obj, _ = self.server.call(
            lambda: self.server.delete_object(spec, namespace, name, options=options)
        )
        return obj

    # ---------------------------------------------------------------------------------------------
    # Waiting

    def wait_for(
        self,
        resource: str,
        namespace: str | None,
        name: str,
        predicate: Predicate | None = None,
        *,
        timeout: float = 10.0,
        interval: float = 0.02,
    ) -> JsonDict:
        """
        Wait until the object exists and ``predicate(obj)`` is truthy; return the object.

        ``predicate`` may also be a dict: a partial match (``{'status': {'phase': 'Ready'}}``).
        Raises ``TimeoutError`` with the last seen state.
        """
        check = _as_predicate(predicate)
        deadline = time.monotonic() + timeout
        while True:
            obj = self.get(resource, namespace, name)
            if obj is not None and check(obj):
                return obj
            if time.monotonic() >= deadline:
                raise TimeoutError(f"{resource} {namespace}/{name} not as expected; last: {obj!r}")
            time.sleep(interval)

    def wait_for_absence(
        self, resource: str, namespace: str | None, name: str, *, timeout: float = 10.0
    ) -> None:
        """Wait until the object is gone."""
        deadline = time.monotonic() + timeout
        while self.get(resource, namespace, name) is not None:
            if time.monotonic() >= deadline:
                raise TimeoutError(f"{resource} {namespace}/{name} still exists")
            time.sleep(0.02)

    async def await_for(
        self,
        resource: str,
        namespace: str | None,
        name: str,
        predicate: Predicate | None = None,
        *,
        timeout: float = 10.0,
    ) -> JsonDict:
        """The async variant of :meth:`wait_for` (polls without blocking the caller's loop)."""
        check = _as_predicate(predicate)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            obj = self.get(resource, namespace, name)
            if obj is not None and check(obj):
                return obj
            if loop.time() >= deadline:
                raise TimeoutError(f"{resource} {namespace}/{name} not as expected; last: {obj!r}")
            await asyncio.sleep(0.02)

    # ---------------------------------------------------------------------------------------------
    # Clients

    def connection_info(self, namespace: str = "default") -> Any:
        """A ``kopf.ConnectionInfo`` pointing to the emulator (with its CA and token if set)."""
        import kopf

        return kopf.ConnectionInfo(
            server=self.url,
            ca_path=str(self.ca_file) if self.ca_file else None,
            insecure=self.ca_file is None,
            token=self.token,
            scheme="Bearer" if self.token else None,
            default_namespace=namespace,
        )

    def login_handler(self, **_: Any) -> Any:
        """A kopf login handler: ``kopf.on.login(registry=registry)(emu.login_handler)``."""
        return self.connection_info()

    def write_kubeconfig(
        self, path: str | pathlib.Path, namespace: str = "default"
    ) -> pathlib.Path:
        """Write a kubeconfig for other clients (kubectl, kubernetes-client) pointing here
        (with the CA certificate and the bearer token when the emulator has them)."""
        path = pathlib.Path(path)
        cluster: dict[str, Any] = {"server": self.url}
        if self.ca_file is not None:
            cluster["certificate-authority"] = str(self.ca_file)
        user: dict[str, Any] = {"token": self.token} if self.token else {}
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "current-context": "emulator",
            "clusters": [{"name": "emulator", "cluster": cluster}],
            "users": [{"name": "emulator", "user": user}],
            "contexts": [
                {
                    "name": "emulator",
                    "context": {"cluster": "emulator", "user": "emulator", "namespace": namespace},
                }
            ],
        }
        path.write_text(json.dumps(config, indent=2))
        path.chmod(0o600)
        return path


def _as_predicate(predicate: Predicate | Mapping[str, Any] | None) -> Predicate:
    if predicate is None:
        return lambda obj: True
    if isinstance(predicate, Mapping):
        pattern = dict(predicate)
        return lambda obj: merge_patch(obj, pattern) == obj
    return predicate


@contextlib.contextmanager
def start_emulator(
    crds: Sequence[Mapping[str, Any]] = (),
    admission: AdmissionHook | None = None,
    *,
    admission_groups: Sequence[str] = ("kubetune.dev",),
    namespaces: Sequence[str] = ("default", "kube-system"),
    seed: int = 0,
    validate_crds: bool = True,
    validate_builtins: bool = True,
    tls: bool = False,
    token: str | None = None,
    certs_dir: str | pathlib.Path | None = None,
    port: int | None = None,
) -> Iterator[Emulator]:
    """
    Run the API emulator on ``http://127.0.0.1:<random port>`` in a background thread.

    ``crds`` are ``apiextensions.k8s.io/v1`` CustomResourceDefinition dicts: their
    resources are served (and the CRDs themselves are stored as objects).
    Custom resources are admitted as kube-apiserver does from their CRD (pruning,
    defaults, schema, CEL rules) unless ``validate_crds=False``; built-in kinds against
    Kubernetes' schemas and validation unless ``validate_builtins=False``.
    ``admission(new, old)`` additionally validates writes to resources of
    ``admission_groups``; a non-empty list of errors is answered with 422 Invalid.
    ``seed`` makes uids & generated names reproducible.
    ``tls=True`` serves HTTPS with a throw-away CA (``emulator.ca_file``; written to
    ``certs_dir`` or a temporary directory); ``token`` requires ``Authorization: Bearer``.
    """
    started: concurrent.futures.Future[Emulator] = concurrent.futures.Future()
    stopped: concurrent.futures.Future[None] = concurrent.futures.Future()
    state: dict[str, Any] = {}
    with contextlib.ExitStack() as stack:
        certs: Certificates | None = None
        if tls:
            directory = certs_dir or stack.enter_context(
                tempfile.TemporaryDirectory(prefix="kube-api-emulator-")
            )
            certs = make_certificates(directory)

        async def main() -> None:
            server = ApiServer(
                crds=crds,
                admission=admission,
                admission_groups=frozenset(admission_groups),
                namespaces=namespaces,
                seed=seed,
                validate_crds=validate_crds,
                validate_builtins=validate_builtins,
                token=token,
            )
            server.attach_loop()
            stop = asyncio.Event()
            state["stop"] = stop
            state["loop"] = asyncio.get_running_loop()
            server_cls = _tls_server_cls(certs) if certs else aiohttp.test_utils.RawTestServer
            http_server = kmock.Server(server, port=port, server_cls=server_cls)
            async with server, http_server as http:
                url = str(http.url).rstrip("/")
                ca_file = certs.ca_file if certs else None
                started.set_result(Emulator(server, url, ca_file=ca_file, token=token))
                await stop.wait()
                server.drop_watches()
                await asyncio.sleep(0.01)  # let the watch handlers finish their responses

        def target() -> None:
            try:
                asyncio.run(main())
            except BaseException as e:  # re-raised in the caller's thread
                if not started.done():
                    started.set_exception(e)
                stopped.set_exception(e)
            else:
                stopped.set_result(None)

        thread = threading.Thread(target=target, name="kube-api-emulator", daemon=True)
        thread.start()
        emulator = started.result(timeout=30)
        try:
            yield emulator
        finally:
            state["loop"].call_soon_threadsafe(state["stop"].set)
            thread.join(timeout=30)
            stopped.result(timeout=0)


def _tls_server_cls(certs: Certificates) -> type[aiohttp.test_utils.RawTestServer]:
    """A kmock server class serving HTTPS with ``certs``."""
    context = certs.server_context()

    class TlsRawTestServer(aiohttp.test_utils.RawTestServer):
        async def start_server(self, loop: Any = None, **kwargs: Any) -> None:
            await super().start_server(loop=loop, ssl=context, **kwargs)

    return TlsRawTestServer
