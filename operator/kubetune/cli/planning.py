"""`kubetune plan`: every Kubernetes object the operator would create for a set of manifests,
printed as YAML (see :mod:`kubetune.cli.render`)."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape

from kubetune.cli.common import (
    ArtifactStore,
    Files,
    ImageCpu,
    ImageCuda,
    console,
    err_console,
    operator_config,
    valid_manifests,
)

if TYPE_CHECKING:
    from kubetune.cli.render import RenderedResource


def plan_command(
    files: Files,
    image_cpu: ImageCpu = None,
    image_cuda: ImageCuda = None,
    artifact_store: ArtifactStore = None,
    allowed_image: Annotated[
        list[str] | None,
        typer.Option(help="An image spec.image may name, as `kubetune operator` (repeatable)."),
    ] = None,
) -> None:
    """Print, as YAML, every Kubernetes object the operator would create for the manifests."""
    from kubetune.api.kinds import parse_resource
    from kubetune.cli.render import plan_manifests

    docs = valid_manifests(files, "nothing was planned: fix the manifests first")
    config = dataclasses.replace(
        operator_config(image_cpu, image_cuda, artifact_store),
        allowed_images=tuple(allowed_image or ()),
    )
    try:
        resources = [parse_resource(doc) for _, doc in docs]
        rendered = plan_manifests(resources, config)
    except ValueError as exc:  # pydantic's ValidationError is a ValueError
        err_console.print(f"[red]✗[/red] {escape(str(exc))}")
        err_console.print("nothing was planned: fix the manifests first")
        raise typer.Exit(1) from None
    _refuse_failed(rendered)
    objects = [child for item in rendered for child in item.plan.children]
    console.print(_yaml(objects), markup=False, end="")


def _refuse_failed(rendered: list[RenderedResource]) -> None:
    """Print why resources render nothing; exit 1 when the operator would fail any."""
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


def _yaml(objects: list[dict[str, Any]]) -> str:
    """The objects as YAML documents; multi-line strings (the step spec JSON) as literal
    blocks."""
    import yaml

    class BlockDumper(yaml.SafeDumper):
        """Multi-line strings as readable literal blocks."""

    def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
        style = "|" if "\n" in value else None
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)

    BlockDumper.add_representer(str, _str)
    return yaml.dump_all(objects, Dumper=BlockDumper, sort_keys=False)
