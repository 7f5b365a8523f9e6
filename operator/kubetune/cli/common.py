"""What the command groups of ``kubetune`` share: the consoles, the flags several commands
take, loading and validating manifests, and the operator settings built from flags."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape

if TYPE_CHECKING:
    from kubetune.plan.world import OperatorConfig

console = Console(highlight=False, soft_wrap=True)
err_console = Console(stderr=True, highlight=False, soft_wrap=True)

Workdir = Annotated[
    Path,
    typer.Option("--workdir", help="Where state, artifacts and logs of local runs live."),
]
Files = Annotated[
    list[Path],
    typer.Option("-f", "--filename", help="Manifest file or directory (repeatable)."),
]
ImageCpu = Annotated[str | None, typer.Option(help="Workload image for CPU steps.")]
ImageCuda = Annotated[str | None, typer.Option(help="Workload image for GPU steps.")]
ArtifactStore = Annotated[
    str | None, typer.Option(help="Default output location, e.g. pvc://kubetune-artifacts.")
]
Verbose = Annotated[bool, typer.Option("--verbose", "-v")]


def fail(message: str, code: int = 1) -> NoReturn:
    """Print ``message`` as an error (a red cross, no markup from it) and exit with ``code``."""
    err_console.print(f"[red]✗[/red] {escape(message)}", soft_wrap=True)
    raise typer.Exit(code) from None


def require_local_run(workdir: Path) -> None:
    """Exit 1 unless ``workdir`` holds the state of a local run (`kubetune run`)."""
    from kubetune.local.store import STATE_FILE

    if not (workdir / STATE_FILE).is_file():
        err_console.print(f"no local run in {workdir}")
        raise typer.Exit(1)


def valid_manifests(files: list[Path], consequence: str) -> list[tuple[str, dict[str, Any]]]:
    """Load and validate every manifest, or print every error and exit 1."""
    from kubetune.schema.validation import InvalidManifests, load_and_validate

    try:
        return load_and_validate(files)
    except InvalidManifests as exc:
        for error in exc.errors:
            err_console.print(f"[red]✗[/red] {escape(error)}")
        err_console.print(consequence)
        raise typer.Exit(1) from None


def operator_config(
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
