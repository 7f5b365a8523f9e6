"""The ``kubetune`` command: this module lists every command, in the order ``--help`` shows
them; each command group lives in its own module.

=====================  ======================================================================
module                 commands
=====================  ======================================================================
:mod:`.schema`         ``version``, ``validate``, ``crds generate|check``, ``docs generate|check``
:mod:`.local`          ``run``, ``status``, ``lineage`` (the local runtime)
:mod:`.planning`       ``plan`` (objects rendered by :mod:`.render`)
:mod:`.cluster`        ``operator`` (and its tenancy flags, :func:`tenancy_config`)
:mod:`.feedback`       ``collector`` (FeedbackLoops' feedback endpoint)
:mod:`.approve`        ``approve`` (a FeedbackLoop's challenger, by a person)
=====================  ======================================================================

Heavy imports happen inside the commands so ``kubetune --help`` is fast. Every command exits
non-zero on failure.
"""

from __future__ import annotations

import typer

from kubetune.cli import approve, cluster, feedback, local, planning, schema
from kubetune.cli.cluster import tenancy_config

__all__ = ["app", "main", "tenancy_config"]

app = typer.Typer(
    name="kubetune",
    help="Kubernetes-native MLOps for domain LLMs: data, fine-tuning, compression, evaluation.",
    no_args_is_help=True,
    add_completion=False,
)
app.add_typer(schema.crds_app, name="crds")
app.add_typer(schema.docs_app, name="docs", hidden=True)
app.command()(schema.version)
app.command()(schema.validate)
app.command()(local.run)
app.command()(local.status)
app.command()(local.lineage)
app.command("plan")(planning.plan_command)
app.command()(cluster.operator)
app.command()(feedback.collector)
app.command()(approve.approve)


def main() -> None:
    """Console-script entry point."""
    app()
