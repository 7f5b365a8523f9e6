"""`kubetune run`, `status` and `lineage`: manifests run on this machine by the local runtime
(the operator's planners, Jobs as processes), and what a run's workdir holds."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from kubetune.cli.common import (
    Files,
    Workdir,
    console,
    err_console,
    require_local_run,
    valid_manifests,
)

if TYPE_CHECKING:
    from kubetune.local.runner import LocalRunner, RunSummary


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
    from kubetune.local.procs import WorkdirBusy, WorkdirLock
    from kubetune.local.runner import LocalRunner

    docs = valid_manifests(files, "nothing was run: fix the manifests first")
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
        summary = _run_live(runner) if console.is_terminal else _run_printing_changes(runner)
        _print_summary(runner, summary)
        if summary.exit_code:
            raise typer.Exit(summary.exit_code)
    finally:
        lock.release()  # the kernel releases it anyway when the process ends


def _run_live(runner: LocalRunner) -> RunSummary:
    """Run, redrawing a table of every resource on each change (a terminal)."""
    from rich.live import Live

    from kubetune.local.view import live_table

    with Live(console=console, refresh_per_second=4, transient=False) as live:
        runner.on_change = lambda r: live.update(live_table([s.body for s in r.ordered()], r.notes))
        return runner.run()


def _run_printing_changes(runner: LocalRunner) -> RunSummary:
    """Run, printing a line when a resource's phase or message changes (a pipe or a log)."""
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
    return runner.run()


def _print_summary(runner: LocalRunner, summary: RunSummary) -> None:
    """Notes, one line per resource, failed gates, and how to resume an interrupted run."""
    from kubetune.local.view import patched_lines, summary_lines

    for note in dict.fromkeys(runner.notes):
        console.print(f"[dim]note: {escape(note)}[/dim]")
    console.rule("summary")
    lines = summary_lines(summary.resources, workdir=runner.workdir)
    for line in lines + patched_lines(summary.patched):
        console.print(line, markup=False)
    for gate in summary.failed_gates:
        err_console.print(f"gate failed: {gate}", markup=False)
    if summary.interrupted:
        err_console.print(f"interrupted: rerun the same command to resume ({runner.workdir})")


def status(
    workdir: Workdir = Path(".kubetune/run"),
    wide: Annotated[bool, typer.Option("--wide", "-o", help="Show all columns.")] = False,
) -> None:
    """Print local resources as `kubectl get` would, from a run's workdir."""
    from kubetune.local.runner import interrupted_resources, with_interruptions
    from kubetune.local.store import LocalStore
    from kubetune.local.view import patched_lines, status_tables, usage_lines

    require_local_run(workdir)
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


def lineage(
    target: Annotated[str, typer.Argument(help="KIND/NAME, e.g. Evaluation/support-eval.")],
    workdir: Workdir = Path(".kubetune/run"),
) -> None:
    """Print the chain of artifacts behind a resource, back to raw data: each input's role,
    URI, version and content hash, from the artifacts' manifests (local runs)."""
    from kubetune.local.lineage import LineageError
    from kubetune.local.lineage import lineage as chain

    require_local_run(workdir)
    try:
        lines = chain(workdir.resolve(), target)
    except LineageError as exc:
        err_console.print(str(exc), markup=False)
        raise typer.Exit(1) from None
    for line in lines:
        console.print(line, markup=False, highlight=False, soft_wrap=True)
