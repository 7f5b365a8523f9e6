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
        "(default: charts/kubetune/crds beside --dir, when that chart exists).",
    ),
]


def _crd_dirs(directory: Path, chart_dir: Path | None) -> list[Path]:
    from kubetune.crd import chart_crd_dir

    chart = chart_dir or chart_crd_dir(directory)
    return [directory] if chart is None else [directory, chart]


@crds_app.command("generate")
def crds_generate(directory: CrdDir = Path("crds"), chart_dir: ChartCrdDir = None) -> None:
    """Write one CRD per kind, generated from the typed API (and the chart's copy)."""
    from kubetune.crd import write_crds

    for target in _crd_dirs(directory, chart_dir):
        for path in write_crds(target):
            console.print(f"[green]wrote[/green] {path}")


@crds_app.command("check")
def crds_check(directory: CrdDir = Path("crds"), chart_dir: ChartCrdDir = None) -> None:
    """Fail when the CRDs on disk (or the chart's copy) differ from what the typed API generates."""
    from kubetune.crd import check_crds

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
    from kubetune.validation import (
        ManifestError,
        format_errors,
        load_manifests,
        validate_manifest,
    )

    notes: list[str] = []
    try:
        documents = load_manifests(files, notes)
    except ManifestError as e:
        err_console.print(f"[red]✗[/red] {escape(str(e))}")
        raise typer.Exit(1) from None
    for note in notes:
        console.print(f"[dim]{escape(note)}[/dim]")
    failed = 0
    for source, doc in documents:
        errors = validate_manifest(doc)
        meta = doc.get("metadata")
        name = meta.get("name", "?") if isinstance(meta, dict) else "?"
        what = escape(f"{source}: {doc.get('kind')}/{name}")
        if errors:
            failed += 1
            console.print(f"[red]✗[/red] {what}")
            console.print(f"  {format_errors(doc, errors)}", markup=False)
            for error in errors:
                console.print(f"  - {error}", markup=False)
        else:
            console.print(f"[green]✓[/green] {what} valid")
    if not documents:
        err_console.print("no kubetune resources found")
        raise typer.Exit(1)
    if failed:
        err_console.print(f"{failed} of {len(documents)} resources invalid")
        raise typer.Exit(1)


@docs_app.command("generate")
def docs_generate(file: DocsFile = Path("docs/api.md")) -> None:
    """Write the API reference generated from the typed API."""
    from kubetune.apidocs import render_api_reference

    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_text(render_api_reference(), encoding="utf-8")
    console.print(f"[green]wrote[/green] {file}")


@docs_app.command("check")
def docs_check(file: DocsFile = Path("docs/api.md")) -> None:
    """Fail when the API reference differs from what the typed API generates."""
    from kubetune.apidocs import render_api_reference

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
    """Run manifests locally, with the operator's planners and no cluster."""
    from rich.live import Live

    from kubetune.local.runner import LocalRunner
    from kubetune.local.view import live_table, patched_lines, summary_lines

    docs = _valid_manifests(files, "nothing was run: fix the manifests first")
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
    if summary.interrupted:
        err_console.print(f"interrupted: rerun the same command to resume ({runner.workdir})")
        raise typer.Exit(130)
    if not summary.ok:
        raise typer.Exit(1)


@app.command()
def status(
    workdir: Workdir = Path(".kubetune/run"),
    wide: Annotated[bool, typer.Option("--wide", "-o", help="Show all columns.")] = False,
) -> None:
    """Print local resources as `kubectl get` would, from a run's workdir."""
    from kubetune.local.store import STATE_FILE, LocalStore
    from kubetune.local.view import patched_lines, status_tables

    if not (workdir / STATE_FILE).is_file():
        err_console.print(f"no local run in {workdir}")
        raise typer.Exit(1)
    state = LocalStore(workdir).state
    bodies = [r.body for r in state.resources.values()]
    for table in status_tables(bodies, wide=wide):
        console.print(table)
        console.print()
    for line in patched_lines(state.patched):
        console.print(line, markup=False)


@app.command("plan")
def plan_command(
    files: Files,
    image_cpu: Annotated[str | None, typer.Option(help="Workload image for CPU steps.")] = None,
    image_cuda: Annotated[str | None, typer.Option(help="Workload image for GPU steps.")] = None,
    artifact_store: Annotated[
        str | None, typer.Option(help="Default output location, e.g. pvc://kubetune-artifacts.")
    ] = None,
) -> None:
    """Print, as YAML, every Kubernetes object the operator would create for the manifests."""
    import yaml

    from kubetune.api.resources import KIND_INFO
    from kubetune.plan.render import plan_manifests

    docs = _valid_manifests(files, "nothing was planned: fix the manifests first")
    config = _operator_config(image_cpu, image_cuda, artifact_store)
    resources = [KIND_INFO[doc["kind"]].model.model_validate(doc) for _, doc in docs]
    rendered = plan_manifests(resources, config)  # type: ignore[arg-type]
    objects = [child for item in rendered for child in item.plan.children]
    for item in rendered:
        if getattr(item, "waiting", None):
            err_console.print(f"# {item.waiting}", markup=False)

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
        str | None, typer.Option(help="This replica's identity (default: POD_NAME + suffix).")
    ] = None,
    lease_duration: Annotated[float, typer.Option(help="Lease duration, seconds.")] = 15.0,
    renew_deadline: Annotated[float, typer.Option(help="Renew deadline, seconds.")] = 10.0,
    retry_period: Annotated[float, typer.Option(help="Lease retry period, seconds.")] = 2.0,
    standalone: Annotated[
        bool, typer.Option(help="Accepted for compatibility: the operator never uses peering.")
    ] = True,
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
            config=_operator_config(image_cpu, image_cuda, artifact_store),
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
    from kubetune.validation import InvalidManifests, load_and_validate

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


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
