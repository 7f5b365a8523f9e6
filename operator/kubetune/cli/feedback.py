"""`kubetune collector` and `kubetune approve`: the FeedbackLoop's feedback endpoint, and a
human's decision on a challenger waiting for approval (local run or cluster)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from kubetune.cli.common import Verbose, console, err_console, fail, require_local_run

if TYPE_CHECKING:
    from kubetune.collector.config import CollectorConfig

Store = Annotated[
    str,
    typer.Option(
        envvar="KUBETUNE_COLLECTOR_STORE",
        help="Feedback store root (file://, pvc:// or s3://): loop NS/NAME writes under "
        "STORE/NS/NAME, which is that FeedbackLoop's spec.feedback.uri.",
    ),
]
Tokens = Annotated[
    Path,
    typer.Option(
        envvar="KUBETUNE_COLLECTOR_TOKENS",
        help="YAML list of {name, token, loops: [NS/LOOP patterns]} (a mounted Secret).",
    ),
]
Host = Annotated[str, typer.Option(help="Address to listen on.")]
Port = Annotated[int, typer.Option(help="Port (0: any free port, printed).")]
Loops = Annotated[
    list[str] | None,
    typer.Option("--loop", help="Accept only these NS/LOOP (repeatable; default: any)."),
]
MaxBodyBytes = Annotated[int, typer.Option(help="Largest request body.")]
MaxRecords = Annotated[int, typer.Option(help="Most records per request.")]
MaxPendingBytes = Annotated[
    int, typer.Option(help="Records waiting for a commit, over which requests get 429.")
]
MaxInflight = Annotated[int, typer.Option(help="Requests handled at once (429).")]
BodyTimeout = Annotated[float, typer.Option(help="Seconds to receive a body (408).")]
SegmentBytes = Annotated[int, typer.Option(help="A segment's largest size.")]
SegmentSeconds = Annotated[float, typer.Option(help="A segment's longest life.")]
RetentionHours = Annotated[
    float, typer.Option(help="How long a record id is remembered (exactly once).")
]
AccessLog = Annotated[bool, typer.Option(help="Log every request (no headers).")]
Workers = Annotated[
    int, typer.Option(min=1, help="Processes serving the port (a supervisor forks them).")
]


def collector(
    store: Store,
    tokens: Tokens,
    host: Host = "127.0.0.1",
    port: Port = 8080,
    loop: Loops = None,
    max_body_bytes: MaxBodyBytes = 8 << 20,
    max_records: MaxRecords = 10_000,
    max_pending_bytes: MaxPendingBytes = 64 << 20,
    max_inflight: MaxInflight = 64,
    body_timeout: BodyTimeout = 30.0,
    segment_bytes: SegmentBytes = 1 << 20,
    segment_seconds: SegmentSeconds = 300.0,
    retention_hours: RetentionHours = 168.0,
    access_log: AccessLog = False,
    workers: Workers = 1,
    verbose: Verbose = False,
) -> None:
    """Serve POST /v1/feedback/NS/LOOP: durable, exactly-once feedback for FeedbackLoops."""
    import logging

    from kubetune.collector.auth import TokenFileError
    from kubetune.collector.config import CollectorConfig
    from kubetune.collector.store import backend_for

    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        backend_for(store)
        config = CollectorConfig(
            store=store,
            tokens_file=tokens,
            loops=tuple(loop or ()),
            max_body_bytes=max_body_bytes,
            max_records=max_records,
            max_inflight=max_inflight,
            max_pending_bytes=max_pending_bytes,
            body_timeout=body_timeout,
            segment_bytes=segment_bytes,
            segment_seconds=segment_seconds,
            retention_seconds=retention_hours * 3600.0,
        )
    except (OSError, ValueError, TokenFileError) as exc:
        fail(str(exc), 2)
    _serve(config, host, port, workers, access_log)


def _serve(config: CollectorConfig, host: str, port: int, workers: int, access_log: bool) -> None:
    """Serve until stopped (Ctrl-C ends quietly); exit 2 when the port or the store fails."""
    from kubetune.collector.auth import TokenFileError
    from kubetune.collector.workers import run_collector

    def ready(bound: int) -> None:
        console.print(f"collector listening on http://{host}:{bound}", markup=False)

    try:
        code = run_collector(config, host, port, workers, access_log=access_log, on_ready=ready)
    except (OSError, ValueError, TokenFileError) as exc:
        fail(str(exc), 2)
    except KeyboardInterrupt:
        return
    if code:
        raise typer.Exit(code)


LoopName = Annotated[str, typer.Argument(help="The FeedbackLoop's name.")]
Cycle = Annotated[str, typer.Argument(help="The cycle waiting for approval, e.g. c3.")]
Reject = Annotated[bool, typer.Option("--reject", help="Reject instead of approve.")]
LoopWorkdir = Annotated[
    Path | None,
    typer.Option(help="A `kubetune run` workdir (else: the cluster of the kubeconfig)."),
]
Namespace = Annotated[str, typer.Option("--namespace", "-n")]
KubeContext = Annotated[str | None, typer.Option(help="Kubeconfig context.")]
Force = Annotated[
    bool, typer.Option(help="Annotate even if the cycle is not awaiting approval yet.")
]


def approve(
    loop: LoopName,
    cycle: Cycle,
    reject: Reject = False,
    workdir: LoopWorkdir = None,
    namespace: Namespace = "default",
    context: KubeContext = None,
    force: Force = False,
) -> None:
    """Approve (promote) or reject a challenger waiting in AwaitingApproval.

    The same as `kubectl annotate ktfl/LOOP kubetune.dev/approve=cN` (or kubetune.dev/reject).
    With --workdir, the annotation goes into a local run's state: run `kubetune run` again.
    """
    if workdir is not None:
        _decide_locally(workdir, loop, cycle, reject, force)
    else:
        _decide_in_cluster(namespace, context, loop, cycle, reject, force)


def _decision(reject: bool) -> tuple[str, str, str]:
    """(the annotation to set, the opposite one, the verb to print)."""
    from kubetune.api.contract import ANNOTATION_APPROVE, ANNOTATION_REJECT

    if reject:
        return ANNOTATION_REJECT, ANNOTATION_APPROVE, "rejected"
    return ANNOTATION_APPROVE, ANNOTATION_REJECT, "approved"


def _show_request(body: dict[str, Any], loop: str, cycle: str, force: bool) -> None:
    """Print the cycle's approval request; exit 1 when the cycle is not awaiting approval
    (unless ``force``)."""
    import yaml

    waiting = (body.get("status") or {}).get("awaitingApproval") or []
    request = next((r for r in waiting if r.get("runId") == cycle), None)
    if request is None and not force:
        runs = ", ".join(str(r.get("runId")) for r in waiting) or "none"
        err_console.print(f"{loop}: cycle {cycle} is not awaiting approval (waiting: {runs})")
        raise typer.Exit(1)
    if request is not None:
        console.print(yaml.safe_dump(request, sort_keys=False).rstrip(), markup=False)


def _decide_locally(workdir: Path, loop: str, cycle: str, reject: bool, force: bool) -> None:
    """Annotate the FeedbackLoop in a local run's state (the next `kubetune run` applies it)."""
    from kubetune.local.store import LocalStore, resource_key

    require_local_run(workdir)
    store = LocalStore(workdir)
    stored = store.state.resources.get(resource_key("FeedbackLoop", loop))
    if stored is None:
        err_console.print(f"no FeedbackLoop {loop} in {workdir}")
        raise typer.Exit(1)
    body = stored.body
    _show_request(body, loop, cycle, force)
    key, other, verb = _decision(reject)
    annotations = body["metadata"].get("annotations") or {}
    annotations = {k: v for k, v in annotations.items() if not (k == other and v == cycle)}
    body["metadata"]["annotations"] = {**annotations, key: cycle}
    store.save()
    console.print(f"{loop} {cycle} {verb}: run `kubetune run` again to apply it")


def _decide_in_cluster(
    namespace: str, context: str | None, loop: str, cycle: str, reject: bool, force: bool
) -> None:
    """Annotate the FeedbackLoop in the cluster of the kubeconfig (else the pod's account)."""
    from kubernetes import client, config

    try:
        config.load_kube_config(context=context)
    except Exception:
        config.load_incluster_config()
    api = client.CustomObjectsApi()
    where = ("kubetune.dev", "v1alpha1", namespace, "feedbackloops", loop)
    body = api.get_namespaced_custom_object(*where)
    _show_request(body, loop, cycle, force)
    key, other, verb = _decision(reject)
    patch: dict[str, Any] = {key: cycle}
    if (body["metadata"].get("annotations") or {}).get(other) == cycle:
        patch[other] = None
    api.patch_namespaced_custom_object(*where, {"metadata": {"annotations": patch}})
    console.print(f"feedbackloop.kubetune.dev/{loop} {cycle} {verb}")
