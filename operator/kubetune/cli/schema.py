"""`kubetune version`, `crds generate|check`, `docs generate|check` and `validate`: the typed
API, the CRDs and the API reference generated from it, and manifests checked against it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from kubetune.cli.common import Files, console, err_console

crds_app = typer.Typer(
    help="Generate or check the CRDs in crds/ and the Helm chart's copy.", no_args_is_help=True
)
docs_app = typer.Typer(help="Generate or check docs/api.md.", no_args_is_help=True)

CrdDir = Annotated[Path, typer.Option("--dir", help="Directory of the CRD YAML files.")]
DocsFile = Annotated[Path, typer.Option("--file", help="The API reference file.")]
ChartCrdDir = Annotated[
    Path | None,
    typer.Option(
        "--chart-dir",
        help="The Helm chart's copy of the CRDs "
        "(default: charts/kubetune/files/crds beside --dir, when that chart exists).",
    ),
]


def version() -> None:
    """Print the kubetune version and API version."""
    from kubetune import __version__
    from kubetune.api import API_VERSION

    console.print(f"kubetune {__version__} (API {API_VERSION})")


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


def validate(files: Files) -> None:
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
