"""The ``kubetune`` command: version, CRD generation and checks, manifest validation.

One function per command; heavy imports happen inside the commands so ``kubetune --help`` is
fast. Every command exits non-zero on failure.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

app = typer.Typer(
    name="kubetune",
    help="Kubernetes-native MLOps for domain LLMs: data, fine-tuning, compression, evaluation.",
    no_args_is_help=True,
    add_completion=False,
)
crds_app = typer.Typer(help="Generate or check the CRDs in crds/.", no_args_is_help=True)
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


@crds_app.command("generate")
def crds_generate(directory: CrdDir = Path("crds")) -> None:
    """Write one CRD per kind, generated from the typed API."""
    from kubetune.crd import write_crds

    for path in write_crds(directory):
        console.print(f"[green]wrote[/green] {path}")


@crds_app.command("check")
def crds_check(directory: CrdDir = Path("crds")) -> None:
    """Fail when the CRDs on disk differ from what the typed API generates."""
    from kubetune.crd import check_crds

    problems = check_crds(directory)
    for problem in problems:
        err_console.print(f"[red]✗[/red] {escape(problem)}")
    if problems:
        err_console.print("run [bold]kubetune crds generate[/bold] to refresh them")
        raise typer.Exit(1)
    console.print(f"[green]✓[/green] CRDs in {directory} are up to date")


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


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
