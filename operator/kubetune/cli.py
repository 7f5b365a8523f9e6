"""The ``kubetune`` command: version, CRD generation and checks, manifest validation.

One function per command; heavy imports happen inside the commands so ``kubetune --help`` is
fast. Every command exits non-zero on failure.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

if TYPE_CHECKING:
    from kubetune.plan.world import OperatorConfig

app = typer.Typer(
    name="kubetune",
    help="Kubernetes-native MLOps for domain LLMs: data, fine-tuning, compression, evaluation.",
    no_args_is_help=True,
    add_completion=False,
)
crds_app = typer.Typer(
    help="Generate or check the CRDs in crds/ and the Helm chart's copy.", no_args_is_help=True
)
docs_app = typer.Typer(help="Generate or check docs/api.md.", no_args_is_help=True)
app.add_typer(crds_app, name="crds")
app.add_typer(docs_app, name="docs", hidden=True)

console = Console(highlight=False, soft_wrap=True)
err_console = Console(stderr=True, highlight=False, soft_wrap=True)

CrdDir = Annotated[Path, typer.Option("--dir", help="Directory of the CRD YAML files.")]
DocsFile = Annotated[Path, typer.Option("--file", help="The API reference file.")]


@app.command()
def version() -> None:
    """Print the kubetune version and API version."""
    from kubetune import __version__
    from kubetune.api import API_VERSION

    console.print(f"kubetune {__version__} (API {API_VERSION})")


ChartCrdDir = Annotated[
    Path | None,
    typer.Option(
        "--chart-dir",
        help="The Helm chart's copy of the CRDs "
        "(default: charts/kubetune/files/crds beside --dir, when that chart exists).",
    ),
]


def _crd_dirs(directory: Path, chart_dir: Path | None) -> list[Path]:
    from kubetune.schema.crd import chart_crd_dir

    chart = chart_dir or chart_crd_dir(directory)
    return [directory] if chart is None else [directory, chart]


@crds_app.command("generate")
def crds_generate(directory: CrdDir = Path("crds"), chart_dir: ChartCrdDir = None) -> None:
    """Write one CRD per kind, generated from the typed API (and the chart's copy)."""
    from kubetune.schema.crd import write_crds

    for target in _crd_dirs(directory, chart_dir):
        for path in write_crds(target):
            console.print(f"[green]wrote[/green] {path}")


@crds_app.command("check")
def crds_check(directory: CrdDir = Path("crds"), chart_dir: ChartCrdDir = None) -> None:
    """Fail when the CRDs on disk (or the chart's copy) differ from what the typed API generates."""
    from kubetune.schema.crd import check_crds

    targets = _crd_dirs(directory, chart_dir)
    problems = [problem for target in targets for problem in check_crds(target)]
    for problem in problems:
        err_console.print(f"[red]✗[/red] {escape(problem)}")
    if problems:
        err_console.print("run [bold]kubetune crds generate[/bold] to refresh them")
        raise typer.Exit(1)
    console.print(f"[green]✓[/green] CRDs in {' and '.join(map(str, targets))} are up to date")


@app.command()
def validate(
    files: Annotated[
        list[Path],
        typer.Option("-f", "--filename", help="Manifest file or directory (repeatable)."),
    ],
) -> None:
    """Check kubetune manifests against the typed API, the CRD schemas and their CEL rules."""
    from kubetune.schema.validation import format_errors, load_manifests, validate_manifest

    notes: list[str] = []
    unreadable: list[str] = []
    documents = load_manifests(files, notes, errors=unreadable)
    for note in notes:
        console.print(f"[dim]{escape(note)}[/dim]")
    for problem in unreadable:
        console.print(f"[red]✗[/red] {escape(problem)}")
    failed = len(unreadable)
    for source, doc in documents:
        errors = validate_manifest(doc)
        meta = doc.get("metadata")
        name = "?"
        if isinstance(meta, dict):
            name = str(meta.get("name") or f"{meta.get('generateName') or '?'}*")
        what = escape(f"{source}: {doc.get('kind')}/{name}")
        if errors:
            failed += 1
            console.print(f"[red]✗[/red] {what}")
            console.print(f"  {format_errors(doc, errors)}", markup=False)
            for error in errors:
                console.print(f"  - {error}", markup=False)
        else:
            console.print(f"[green]✓[/green] {what} valid")
    if not documents and not unreadable:
        err_console.print("no kubetune resources found")
        raise typer.Exit(1)
    if failed:
        err_console.print(
            f"{failed - len(unreadable)} of {len(documents)} resources invalid"
            + (f"; {len(unreadable)} unreadable file(s) or document(s)" if unreadable else "")
        )
        raise typer.Exit(1)


@docs_app.command("generate")
def docs_generate(file: DocsFile = Path("docs/api.md")) -> None:
    """Write the API reference generated from the typed API."""
    from kubetune.schema.apidocs import render_api_reference

    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_text(render_api_reference(), encoding="utf-8")
    console.print(f"[green]wrote[/green] {file}")


@docs_app.command("check")
def docs_check(file: DocsFile = Path("docs/api.md")) -> None:
    """Fail when the API reference differs from what the typed API generates."""
    from kubetune.schema.apidocs import render_api_reference

    if not file.exists() or file.read_text(encoding="utf-8") != render_api_reference():
        err_console.print(f"[red]✗[/red] {file} is stale; run kubetune docs generate")
        raise typer.Exit(1)
    console.print(f"[green]✓[/green] {file} is up to date")


Workdir = Annotated[
    Path,
    typer.Option("--workdir", help="Where state, artifacts and logs of local runs live."),
]
Files = Annotated[
    list[Path],
    typer.Option("-f", "--filename", help="Manifest file or directory (repeatable)."),
]


@app.command()
def run(
    files: Files,
    workdir: Workdir = Path(".kubetune/run"),
    parallel: Annotated[int, typer.Option(help="Steps run at the same time.")] = 1,
) -> None:
    """Run manifests locally, with the operator's planners and no cluster.

    Exit codes: 0 every resource Ready/Succeeded and every Evaluation passed its gates; 1 a
    resource failed or could not finish (or the workdir is in use by another run); 3 every
    step finished but an Evaluation failed a gate; 130 stopped by Ctrl-C (SIGINT), 143 by
    SIGTERM (both resumable: rerun the same command).
    """
    from rich.live import Live

    from kubetune.local.procs import WorkdirBusy, WorkdirLock
    from kubetune.local.runner import LocalRunner
    from kubetune.local.view import live_table, patched_lines, summary_lines

    docs = _valid_manifests(files, "nothing was run: fix the manifests first")
    lock = WorkdirLock(workdir.resolve())
    try:
        lock.acquire()
    except WorkdirBusy as exc:
        err_console.print(str(exc), markup=False)
        raise typer.Exit(1) from None
    try:
        runner = LocalRunner(workdir, parallel=parallel)
        for key, outcome in runner.apply(docs).items():
            console.print(f"{key} {outcome}")
        console.print(f"workdir: {runner.workdir}  (logs in {runner.paths.logs})")
        if console.is_terminal:
            with Live(console=console, refresh_per_second=4, transient=False) as live:
                runner.on_change = lambda r: live.update(
                    live_table([s.body for s in r.ordered()], r.notes)
                )
                summary = runner.run()
        else:
            seen: dict[str, str] = {}

            def report(r: LocalRunner) -> None:
                for stored in r.ordered():
                    status = stored.body.get("status") or {}
                    line = f"{status.get('phase') or 'Pending'}: {status.get('message') or ''}"
                    key = f"{stored.kind}/{stored.name}"
                    if seen.get(key) != line:
                        seen[key] = line
                        console.print(f"{key} {line}", markup=False)

            runner.on_change = report
            summary = runner.run()
        for note in dict.fromkeys(runner.notes):
            console.print(f"[dim]note: {escape(note)}[/dim]")
        console.rule("summary")
        for line in summary_lines(summary.resources) + patched_lines(summary.patched):
            console.print(line, markup=False)
        for gate in summary.failed_gates:
            err_console.print(f"gate failed: {gate}", markup=False)
        if summary.interrupted:
            err_console.print(f"interrupted: rerun the same command to resume ({runner.workdir})")
        if summary.exit_code:
            raise typer.Exit(summary.exit_code)
    finally:
        lock.release()  # the kernel releases it anyway when the process ends


@app.command()
def status(
    workdir: Workdir = Path(".kubetune/run"),
    wide: Annotated[bool, typer.Option("--wide", "-o", help="Show all columns.")] = False,
) -> None:
    """Print local resources as `kubectl get` would, from a run's workdir."""
    from kubetune.local.runner import interrupted_resources, with_interruptions
    from kubetune.local.store import STATE_FILE, LocalStore
    from kubetune.local.view import patched_lines, status_tables, usage_lines

    if not (workdir / STATE_FILE).is_file():
        err_console.print(f"no local run in {workdir}")
        raise typer.Exit(1)
    store = LocalStore(workdir)
    state = store.state
    bodies = with_interruptions(
        [r.body for r in state.resources.values()], interrupted_resources(store)
    )
    for table in status_tables(bodies, wide=wide):
        console.print(table)
        console.print()
    for line in patched_lines(state.patched) + usage_lines(bodies):
        console.print(line, markup=False)


@app.command()
def lineage(
    target: Annotated[str, typer.Argument(help="KIND/NAME, e.g. Evaluation/support-eval.")],
    workdir: Workdir = Path(".kubetune/run"),
) -> None:
    """Print the chain of artifacts behind a resource, back to raw data: each input's role,
    URI, version and content hash, from the artifacts' manifests (local runs)."""
    from kubetune.local.lineage import LineageError
    from kubetune.local.lineage import lineage as chain
    from kubetune.local.store import STATE_FILE

    if not (workdir / STATE_FILE).is_file():
        err_console.print(f"no local run in {workdir}")
        raise typer.Exit(1)
    try:
        lines = chain(workdir.resolve(), target)
    except LineageError as exc:
        err_console.print(str(exc), markup=False)
        raise typer.Exit(1) from None
    for line in lines:
        console.print(line, markup=False, highlight=False, soft_wrap=True)


@app.command("plan")
def plan_command(
    files: Files,
    image_cpu: Annotated[str | None, typer.Option(help="Workload image for CPU steps.")] = None,
    image_cuda: Annotated[str | None, typer.Option(help="Workload image for GPU steps.")] = None,
    artifact_store: Annotated[
        str | None, typer.Option(help="Default output location, e.g. pvc://kubetune-artifacts.")
    ] = None,
    allowed_image: Annotated[
        list[str] | None,
        typer.Option(help="An image spec.image may name, as `kubetune operator` (repeatable)."),
    ] = None,
) -> None:
    """Print, as YAML, every Kubernetes object the operator would create for the manifests."""
    import yaml

    from kubetune.api.kinds import KIND_INFO
    from kubetune.plan.render import plan_manifests

    docs = _valid_manifests(files, "nothing was planned: fix the manifests first")
    config = dataclasses.replace(
        _operator_config(image_cpu, image_cuda, artifact_store),
        allowed_images=tuple(allowed_image or ()),
    )
    try:
        resources = [KIND_INFO[doc["kind"]].model.model_validate(doc) for _, doc in docs]
        rendered = plan_manifests(resources, config)  # type: ignore[arg-type]
    except ValueError as exc:  # pydantic's ValidationError is a ValueError
        err_console.print(f"[red]✗[/red] {escape(str(exc))}")
        err_console.print("nothing was planned: fix the manifests first")
        raise typer.Exit(1) from None
    objects = [child for item in rendered for child in item.plan.children]
    for item in rendered:
        if getattr(item, "waiting", None):
            err_console.print(f"# {item.waiting}", markup=False)
    refused = [item for item in rendered if item.plan.status.get("phase") == "Failed"]
    for item in refused:
        what = f"{item.resource.kind}/{item.resource.name}"
        err_console.print(
            f"[red]✗[/red] {escape(what)}: {escape(str(item.plan.status['message']))}"
        )
    if refused:
        err_console.print("nothing was planned: the operator would fail these resources")
        raise typer.Exit(1)

    class BlockDumper(yaml.SafeDumper):
        """Multi-line strings (the step spec JSON) as readable literal blocks."""

    def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
        style = "|" if "\n" in value else None
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)

    BlockDumper.add_representer(str, _str)
    text = yaml.dump_all(objects, Dumper=BlockDumper, sort_keys=False)
    console.print(text, markup=False, end="")


@app.command()
def operator(
    namespace: Annotated[
        list[str] | None,
        typer.Option("--namespace", "-n", help="Namespace to watch (repeatable; default: all)."),
    ] = None,
    image_cpu: Annotated[str | None, typer.Option(help="Workload image for CPU steps.")] = None,
    image_cuda: Annotated[str | None, typer.Option(help="Workload image for GPU steps.")] = None,
    artifact_store: Annotated[
        str | None, typer.Option(help="Default output location, e.g. pvc://kubetune-artifacts.")
    ] = None,
    metrics_port: Annotated[
        int | None, typer.Option(help="Prometheus port (0 disables; env KUBETUNE_METRICS_PORT).")
    ] = None,
    liveness: Annotated[
        str, typer.Option(help="Liveness endpoint served by kopf.")
    ] = "http://0.0.0.0:8081/healthz",
    log_format: Annotated[
        str | None, typer.Option(help="plain, full or json (env KUBETUNE_LOG_FORMAT).")
    ] = None,
    kubeconfig: Annotated[
        str | None,
        typer.Option(help="kubeconfig file (default: in-cluster account, then KUBECONFIG)."),
    ] = None,
    context: Annotated[str | None, typer.Option(help="kubeconfig context to use.")] = None,
    leader_elect: Annotated[
        bool,
        typer.Option(help="Only the holder of a coordination.k8s.io Lease acts (HA replicas)."),
    ] = False,
    leader_election_namespace: Annotated[
        str | None, typer.Option(help="Namespace of the Lease (default: POD_NAMESPACE).")
    ] = None,
    leader_election_id: Annotated[
        str | None,
        typer.Option(help="This replica's identity (default: POD_NAME, else host_random)."),
    ] = None,
    lease_duration: Annotated[float, typer.Option(help="Lease duration, seconds.")] = 15.0,
    renew_deadline: Annotated[float, typer.Option(help="Renew deadline, seconds.")] = 10.0,
    retry_period: Annotated[float, typer.Option(help="Lease retry period, seconds.")] = 2.0,
    standalone: Annotated[
        bool, typer.Option(help="Accepted for compatibility: the operator never uses peering.")
    ] = True,
    allowed_image: Annotated[
        list[str] | None,
        typer.Option(
            help="An image spec.image may name (repeatable; a trailing * matches a prefix). "
            "Default: only the CPU and CUDA images."
        ),
    ] = None,
    workload_service_account: Annotated[
        list[str] | None,
        typer.Option(
            help="ServiceAccount of workload pods: NAME for every namespace, or NAMESPACE=NAME "
            "(repeatable), e.g. for IRSA/workload identity of an s3:// store."
        ),
    ] = None,
    image_pull_secret: Annotated[
        list[str] | None,
        typer.Option(
            help="imagePullSecret of workload pods: NAME, or NAMESPACE=NAME (repeatable)."
        ),
    ] = None,
    default_requests: Annotated[
        list[str] | None,
        typer.Option(
            help="CPU/memory requests of pods whose spec sets none: STEP=CPU,MEMORY (repeatable; "
            "STEP is dataprep, finetune, compress, evaluate, feedback, or STEP-gpu)."
        ),
    ] = None,
    metrics_bind_address: Annotated[
        str, typer.Option(help="Address of /metrics (127.0.0.1 behind kube-rbac-proxy).")
    ] = "0.0.0.0",
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Run the operator against the cluster of the pod's service account or the kubeconfig.

    Exit codes: 2 no credentials or bad flags, 1 the API server is unreachable, refuses the
    credentials or does not serve kubetune's CRDs, 3 the leader Lease was lost.
    """
    from kubetune.controllers.credentials import KubeAccess
    from kubetune.controllers.main import CannotStart, LeaderElection, run_operator

    try:
        election = LeaderElection(
            enabled=leader_elect,
            namespace=leader_election_namespace,
            identity=leader_election_id,
            lease_duration=lease_duration,
            renew_deadline=renew_deadline,
            retry_period=retry_period,
        )
        run_operator(
            namespaces=namespace or None,
            config=tenancy_config(
                _operator_config(image_cpu, image_cuda, artifact_store),
                allowed_images=allowed_image or [],
                service_accounts=workload_service_account or [],
                pull_secrets=image_pull_secret or [],
                default_requests=default_requests or [],
                metrics_bind_address=metrics_bind_address,
            ),
            metrics_port=metrics_port,
            liveness=liveness,
            log_format=log_format,
            access=KubeAccess(kubeconfig=kubeconfig, context=context),
            leader_election=election,
            verbose=verbose,
        )
    except CannotStart as exc:
        err_console.print(f"[red]✗[/red] {escape(str(exc))}", soft_wrap=True)
        raise typer.Exit(exc.exit_code) from None
    except ValueError as exc:
        err_console.print(f"[red]✗[/red] {escape(str(exc))}", soft_wrap=True)
        raise typer.Exit(2) from None


def _valid_manifests(files: list[Path], consequence: str) -> list[tuple[str, dict[str, Any]]]:
    """Load and validate every manifest, or print every error and exit 1."""
    from kubetune.schema.validation import InvalidManifests, load_and_validate

    try:
        return load_and_validate(files)
    except InvalidManifests as exc:
        for error in exc.errors:
            err_console.print(f"[red]✗[/red] {escape(error)}")
        err_console.print(consequence)
        raise typer.Exit(1) from None


def _operator_config(
    image_cpu: str | None, image_cuda: str | None, artifact_store: str | None
) -> OperatorConfig:
    """Operator settings from the flags `kubetune plan` and `kubetune operator` share."""
    from kubetune.plan.world import OperatorConfig

    default = OperatorConfig()
    return dataclasses.replace(
        default,
        cpu_image=image_cpu or default.cpu_image,
        cuda_image=image_cuda or default.cuda_image,
        artifact_store=artifact_store or default.artifact_store,
    )


@app.command()
def collector(
    store: Annotated[
        str,
        typer.Option(
            envvar="KUBETUNE_COLLECTOR_STORE",
            help="Feedback store root (file://, pvc:// or s3://): loop NS/NAME writes under "
            "STORE/NS/NAME, which is that FeedbackLoop's spec.feedback.uri.",
        ),
    ],
    tokens: Annotated[
        Path,
        typer.Option(
            envvar="KUBETUNE_COLLECTOR_TOKENS",
            help="YAML list of {name, token, loops: [NS/LOOP patterns]} (a mounted Secret).",
        ),
    ],
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port (0: any free port, printed).")] = 8080,
    loop: Annotated[
        list[str] | None,
        typer.Option("--loop", help="Accept only these NS/LOOP (repeatable; default: any)."),
    ] = None,
    max_body_bytes: Annotated[int, typer.Option(help="Largest request body.")] = 8 << 20,
    max_records: Annotated[int, typer.Option(help="Most records per request.")] = 10_000,
    max_pending_bytes: Annotated[
        int, typer.Option(help="Records waiting for a commit, over which requests get 429.")
    ] = 64 << 20,
    max_inflight: Annotated[int, typer.Option(help="Requests handled at once (429).")] = 64,
    body_timeout: Annotated[float, typer.Option(help="Seconds to receive a body (408).")] = 30.0,
    segment_bytes: Annotated[int, typer.Option(help="A segment's largest size.")] = 1 << 20,
    segment_seconds: Annotated[float, typer.Option(help="A segment's longest life.")] = 300.0,
    retention_hours: Annotated[
        float, typer.Option(help="How long a record id is remembered (exactly once).")
    ] = 168.0,
    access_log: Annotated[bool, typer.Option(help="Log every request (no headers).")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Serve POST /v1/feedback/NS/LOOP: durable, exactly-once feedback for FeedbackLoops."""
    import asyncio
    import logging

    from kubetune.collector.auth import TokenFileError
    from kubetune.collector.server import CollectorConfig, serve
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

        def ready(bound: int) -> None:
            console.print(f"collector listening on http://{host}:{bound}", markup=False)

        asyncio.run(serve(config, host, port, access_log=access_log, on_ready=ready))
    except (OSError, ValueError, TokenFileError) as exc:
        err_console.print(f"[red]✗[/red] {escape(str(exc))}", soft_wrap=True)
        raise typer.Exit(2) from None
    except KeyboardInterrupt:
        pass


@app.command()
def approve(
    loop: Annotated[str, typer.Argument(help="The FeedbackLoop's name.")],
    cycle: Annotated[str, typer.Argument(help="The cycle waiting for approval, e.g. c3.")],
    reject: Annotated[bool, typer.Option("--reject", help="Reject instead of approve.")] = False,
    workdir: Annotated[
        Path | None,
        typer.Option(help="A `kubetune run` workdir (else: the cluster of the kubeconfig)."),
    ] = None,
    namespace: Annotated[str, typer.Option("--namespace", "-n")] = "default",
    context: Annotated[str | None, typer.Option(help="Kubeconfig context.")] = None,
    force: Annotated[
        bool, typer.Option(help="Annotate even if the cycle is not awaiting approval yet.")
    ] = False,
) -> None:
    """Approve (promote) or reject a challenger waiting in AwaitingApproval.

    The same as `kubectl annotate ktfl/LOOP kubetune.dev/approve=cN` (or kubetune.dev/reject).
    With --workdir, the annotation goes into a local run's state: run `kubetune run` again.
    """
    import yaml

    from kubetune.api.contract import ANNOTATION_APPROVE, ANNOTATION_REJECT

    key = ANNOTATION_REJECT if reject else ANNOTATION_APPROVE
    other = ANNOTATION_APPROVE if reject else ANNOTATION_REJECT
    verb = "rejected" if reject else "approved"
    if workdir is not None:
        from kubetune.local.store import STATE_FILE, LocalStore, resource_key

        if not (workdir / STATE_FILE).is_file():
            err_console.print(f"no local run in {workdir}")
            raise typer.Exit(1)
        store = LocalStore(workdir)
        stored = store.state.resources.get(resource_key("FeedbackLoop", loop))
        if stored is None:
            err_console.print(f"no FeedbackLoop {loop} in {workdir}")
            raise typer.Exit(1)
        body = stored.body
    else:
        from kubernetes import client, config

        try:
            config.load_kube_config(context=context)
        except Exception:
            config.load_incluster_config()
        api = client.CustomObjectsApi()
        body = api.get_namespaced_custom_object(
            "kubetune.dev", "v1alpha1", namespace, "feedbackloops", loop
        )
    waiting = (body.get("status") or {}).get("awaitingApproval") or []
    request = next((r for r in waiting if r.get("runId") == cycle), None)
    if request is None and not force:
        runs = ", ".join(str(r.get("runId")) for r in waiting) or "none"
        err_console.print(f"{loop}: cycle {cycle} is not awaiting approval (waiting: {runs})")
        raise typer.Exit(1)
    if request is not None:
        console.print(yaml.safe_dump(request, sort_keys=False).rstrip(), markup=False)
    annotations = body["metadata"].get("annotations") or {}
    if workdir is not None:
        annotations = {k: v for k, v in annotations.items() if not (k == other and v == cycle)}
        body["metadata"]["annotations"] = {**annotations, key: cycle}
        store.save()
        console.print(f"{loop} {cycle} {verb}: run `kubetune run` again to apply it")
    else:
        patch: dict[str, Any] = {key: cycle}
        if annotations.get(other) == cycle:
            patch[other] = None
        api.patch_namespaced_custom_object(
            "kubetune.dev",
            "v1alpha1",
            namespace,
            "feedbackloops",
            loop,
            {"metadata": {"annotations": patch}},
        )
        console.print(f"feedbackloop.kubetune.dev/{loop} {cycle} {verb}")


def tenancy_config(
    config: OperatorConfig,
    *,
    allowed_images: list[str],
    service_accounts: list[str],
    pull_secrets: list[str],
    default_requests: list[str],
    metrics_bind_address: str = "0.0.0.0",
) -> OperatorConfig:
    """``config`` with the tenancy flags of `kubetune operator` (ValueError on a bad one)."""

    def split(values: list[str]) -> tuple[list[str], list[tuple[str, str]]]:
        plain = [v for v in values if "=" not in v]
        scoped = [tuple(v.split("=", 1)) for v in values if "=" in v]
        return plain, [(ns, name) for ns, name in scoped]

    accounts, scoped_accounts = split(service_accounts)
    if len(accounts) > 1:
        raise ValueError("--workload-service-account NAME may be given once (else NS=NAME)")
    secrets, scoped_secrets = split(pull_secrets)
    requests = dict((step, (cpu, memory)) for step, cpu, memory in config.default_requests)
    for entry in default_requests:
        step, _, amounts = entry.partition("=")
        cpu, _, memory = amounts.partition(",")
        if not step or not cpu or not memory:
            raise ValueError(f"--default-requests {entry!r}: expected STEP=CPU,MEMORY")
        requests[step] = (cpu, memory)
    return dataclasses.replace(
        config,
        allowed_images=tuple(allowed_images),
        service_account=accounts[0] if accounts else config.service_account,
        namespace_service_accounts=tuple(scoped_accounts),
        image_pull_secrets=(*config.image_pull_secrets, *secrets),
        namespace_image_pull_secrets=tuple(scoped_secrets),
        default_requests=tuple((s, c, m) for s, (c, m) in requests.items()),
        metrics_bind_address=metrics_bind_address,
    )


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
