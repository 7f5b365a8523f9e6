"""`kubetune approve`: a person's decision on a FeedbackLoop's challenger waiting for approval,
in a local run's workdir or in the cluster of a kubeconfig.

Every refusal is one line and a non-zero exit code: 1 when the loop or the cycle is not there
(or not waiting), 2 when no cluster can be reached or asked (no kubeconfig, a context that is
not in it, a server that does not answer or refuses), or the flags contradict each other.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from kubetune.cli.common import console, fail, require_local_run

if TYPE_CHECKING:
    from kubetune.controllers.credentials import KubeAccess
    from kubetune.controllers.kube import Api

EXIT_NOT_THERE = 1
EXIT_NO_CLUSTER = 2
EXIT_USAGE = 2
LOOP_KIND = "FeedbackLoop"
# Retries of a dropped connection before the command gives up (seconds between them).
CLI_RETRY_DELAYS = (0.5, 1.0)

LoopName = Annotated[str, typer.Argument(help="The FeedbackLoop's name.")]
Cycle = Annotated[str, typer.Argument(help="The cycle waiting for approval, e.g. c3.")]
Reject = Annotated[bool, typer.Option("--reject", help="Reject instead of approve.")]
LoopWorkdir = Annotated[
    Path | None,
    typer.Option(help="A `kubetune run` workdir (else: the cluster of the kubeconfig)."),
]
Namespace = Annotated[
    str | None,
    typer.Option(
        "--namespace",
        "-n",
        help="The loop's namespace (default: the kubeconfig context's, or the local run's).",
    ),
]
Kubeconfig = Annotated[
    str | None, typer.Option(help="Kubeconfig file (default: $KUBECONFIG, ~/.kube/config).")
]
KubeContext = Annotated[str | None, typer.Option(help="Kubeconfig context.")]
Force = Annotated[
    bool, typer.Option(help="Annotate even if the cycle is not awaiting approval yet.")
]


def approve(
    loop: LoopName,
    cycle: Cycle,
    reject: Reject = False,
    workdir: LoopWorkdir = None,
    namespace: Namespace = None,
    kubeconfig: Kubeconfig = None,
    context: KubeContext = None,
    force: Force = False,
) -> None:
    """Approve (promote) or reject a challenger waiting in AwaitingApproval.

    The same as `kubectl annotate ktfl/LOOP kubetune.dev/approve=cN` (or kubetune.dev/reject).
    With --workdir, the annotation goes into a local run's state: run `kubetune run` again.
    Exit codes: 1 no such loop, or the cycle is not waiting; 2 no cluster to ask, or
    --workdir with --kubeconfig/--context.
    """
    if workdir is not None:
        if kubeconfig or context:
            fail("--workdir approves in a local run: drop --kubeconfig/--context", EXIT_USAGE)
        _decide_locally(workdir, namespace, loop, cycle, reject, force)
    else:
        from kubetune.controllers.credentials import KubeAccess

        access = KubeAccess(kubeconfig=kubeconfig, context=context)
        _decide_in_cluster(access, namespace, loop, cycle, reject, force)


def _decision(reject: bool) -> tuple[str, str, str]:
    """(the annotation to set, the opposite one, the verb to print)."""
    from kubetune.api.contract import ANNOTATION_APPROVE, ANNOTATION_REJECT

    if reject:
        return ANNOTATION_REJECT, ANNOTATION_APPROVE, "rejected"
    return ANNOTATION_APPROVE, ANNOTATION_REJECT, "approved"


def _show_request(body: dict[str, Any], where: str, cycle: str, force: bool) -> None:
    """Print the cycle's approval request; exit 1 when the cycle is not awaiting approval
    (unless ``force``)."""
    import yaml

    waiting = (body.get("status") or {}).get("awaitingApproval") or []
    request = next((r for r in waiting if r.get("runId") == cycle), None)
    if request is None and not force:
        runs = ", ".join(str(r.get("runId")) for r in waiting) or "none"
        fail(
            f"{where}: cycle {cycle} is not awaiting approval (waiting: {runs}); "
            "--force annotates anyway",
            EXIT_NOT_THERE,
        )
    if request is not None:
        console.print(yaml.safe_dump(request, sort_keys=False).rstrip(), markup=False)


# --- a local run ----------------------------------------------------------------------------


def _decide_locally(
    workdir: Path, namespace: str | None, loop: str, cycle: str, reject: bool, force: bool
) -> None:
    """Annotate the FeedbackLoop in a local run's state (the next `kubetune run` applies it)."""
    from kubetune.local.store import LocalStore, resource_key

    require_local_run(workdir)
    try:
        store = LocalStore(workdir)
    except (OSError, ValueError) as exc:
        fail(f"cannot read the local run in {workdir}: {exc}", EXIT_NOT_THERE)
    local_namespace = store.state.namespace
    stored = store.state.resources.get(resource_key(LOOP_KIND, loop))
    if stored is None or namespace not in (None, local_namespace):
        loops = sorted(r.name for r in store.state.resources.values() if r.kind == LOOP_KIND)
        fail(
            f"no FeedbackLoop {loop} in namespace {namespace or local_namespace} of the local "
            f"run in {workdir} (its namespace is {local_namespace}; its FeedbackLoops: "
            f"{', '.join(loops) or 'none'})",
            EXIT_NOT_THERE,
        )
    body = stored.body
    _show_request(body, f"{local_namespace}/{loop}", cycle, force)
    key, other, verb = _decision(reject)
    annotations = body["metadata"].get("annotations") or {}
    annotations = {k: v for k, v in annotations.items() if not (k == other and v == cycle)}
    body["metadata"]["annotations"] = {**annotations, key: cycle}
    store.save()
    again = f"kubetune run -f MANIFESTS --workdir {shlex.quote(str(workdir))}"
    console.print(f"{loop} {cycle} {verb}: run `{again}` again to apply it", markup=False)


# --- a cluster ------------------------------------------------------------------------------


def _decide_in_cluster(
    access: KubeAccess, namespace: str | None, loop: str, cycle: str, reject: bool, force: bool
) -> None:
    """Annotate the FeedbackLoop in the cluster of the kubeconfig (else the pod's account)."""
    from kubetune.api.common import API_VERSION
    from kubetune.controllers.kube import MERGE_PATCH, object_url

    api = _connect(access)
    namespace = namespace or api.login.namespace
    url = object_url(API_VERSION, LOOP_KIND, namespace, loop)
    body = _get_loop(api, url, namespace, loop)
    _show_request(body, f"{namespace}/{loop}", cycle, force)
    key, other, verb = _decision(reject)
    patch: dict[str, Any] = {key: cycle}
    if (body["metadata"].get("annotations") or {}).get(other) == cycle:
        patch[other] = None
    annotate = {"metadata": {"annotations": patch}}
    _call(api, "PATCH", url, f"annotate FeedbackLoop {namespace}/{loop}", annotate, MERGE_PATCH)
    console.print(f"feedbackloop.kubetune.dev/{loop} {cycle} {verb}", markup=False)


def _connect(access: KubeAccess) -> Api:
    """Log in as kubectl would; exit 2 with what was tried when nothing works."""
    from kubetune.controllers.credentials import LoginFailed
    from kubetune.controllers.kube import Api

    api = Api(access, retry_delays=CLI_RETRY_DELAYS)
    try:
        api.login  # noqa: B018 (logs in now, to report a missing config before anything else)
    except LoginFailed as exc:
        if access.context and (known := _contexts(access)) is not None:
            fail(
                f"kubeconfig context {access.context!r} does not exist (contexts: "
                f"{', '.join(known) or 'none'}): pass --context NAME of one of them, or "
                "--kubeconfig FILE",
                EXIT_NO_CLUSTER,
            )
        fail(f"{exc}; or approve in a local run with --workdir DIR", EXIT_NO_CLUSTER)
    return api


def _contexts(access: KubeAccess) -> list[str] | None:
    """The context names of the kubeconfig ``access`` reads (None when it cannot be read)."""
    import os

    from kubernetes import config

    from kubetune.controllers.credentials import DEFAULT_KUBECONFIG

    files = access.kubeconfig or os.environ.get("KUBECONFIG") or DEFAULT_KUBECONFIG
    try:
        contexts, _ = config.list_kube_config_contexts(config_file=os.path.expanduser(files))
    except Exception:  # the loader raises ConfigException, OSError, yaml errors...
        return None
    return [str(c.get("name")) for c in contexts or []]


def _get_loop(api: Api, url: str, namespace: str, loop: str) -> dict[str, Any]:
    """The FeedbackLoop; exit 1 naming the loops of the namespace when it does not exist."""
    body = _call(api, "GET", url, f"get FeedbackLoop {namespace}/{loop}", missing_ok=True)
    if body is not None:
        return dict(body)
    collection = url.rsplit("/", 1)[0]
    listed = _call(api, "GET", collection, f"list the FeedbackLoops of namespace {namespace}")
    names = sorted(str(i["metadata"]["name"]) for i in listed.get("items") or [])
    fail(
        f"FeedbackLoop {loop} not found in namespace {namespace} (its FeedbackLoops: "
        f"{', '.join(names) or 'none'}); -n NAMESPACE names another",
        EXIT_NOT_THERE,
    )


def _call(
    api: Api,
    method: str,
    url: str,
    what: str,
    body: Any = None,
    content_type: str | None = None,
    *,
    missing_ok: bool = False,
) -> Any:
    """One API call; exit 2 with one line when the server cannot be reached or refuses (None
    for a missing object when ``missing_ok``)."""
    from kubetune.controllers.kube import APIError, NotFound, Unreachable

    login = api.login
    server = f"the Kubernetes API server at {login.configuration.host} ({login.source})"
    try:
        return api.request(method, url, body, content_type=content_type)
    except Unreachable as exc:
        fail(f"cannot reach {server}: {exc.message}", EXIT_NO_CLUSTER)
    except NotFound:
        if missing_ok:  # the object, or its type: listing them tells which
            return None
        fail(f"{server} does not serve FeedbackLoops: install kubetune's CRDs", EXIT_NO_CLUSTER)
    except APIError as exc:
        fail(f"{server} refused to {what}: {exc.status} {exc.message}", EXIT_NO_CLUSTER)
