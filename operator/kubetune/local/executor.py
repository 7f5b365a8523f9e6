"""Run a planned batch/v1 Job as a local process, and describe it back as the planner sees Jobs.

The Job's container command (``python -m kubetune_workloads <step> --spec ...``) runs with this
interpreter; the step spec comes from the Job's ConfigMap child. Secrets referenced by the Job
are taken from the caller's environment when a variable of the same name is set (a laptop has
no Secrets), never written anywhere. Multi-node Jobs run as one local torchrun with one process
per node and GPU; any other Indexed Job (a parallel Dataset's map stage) runs as one process
told how many indexes it stands for (``KUBETUNE_LOCAL_COMPLETIONS``), which runs them as that
many worker processes.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from kubetune.api.contract import (
    CACHE_ENV,
    LABEL_RUN_ID,
    LOCAL_COMPLETIONS_ENV,
    PROGRESS_FILE_ENV,
    PVC_ROOT_ENV,
    RESULT_LINE_PREFIX,
    SPEC_KEY,
    TERMINATION_LOG_ENV,
)
from kubetune.local.procs import die_with_parent, process_start
from kubetune.local.store import Execution, now
from kubetune.plan.naming import ANNOTATION_SPEC_HASH
from kubetune.plan.world import ObservedJob, ObservedPod

# Each folder of a local run's workdir: (attribute of LocalPaths, folder name).
_WORKDIR_FOLDERS = (
    ("runs", "runs"),
    ("logs", "logs"),
    ("pvc_root", "pvc"),
    ("cache", "cache"),
    ("artifacts", "artifacts"),
)


@dataclass
class LocalPaths:
    """Where a local run keeps its files: one folder each under ``workdir``."""

    workdir: Path
    runs: Path = field(init=False)
    logs: Path = field(init=False)
    pvc_root: Path = field(init=False)
    cache: Path = field(init=False)
    artifacts: Path = field(init=False)

    def __post_init__(self) -> None:
        for attribute, folder in _WORKDIR_FOLDERS:
            setattr(self, attribute, self.workdir / folder)


def _container(job: dict[str, Any]) -> dict[str, Any]:
    return dict(job["spec"]["template"]["spec"]["containers"][0])


def step_spec_text(job: dict[str, Any], children: dict[str, dict[str, Any]]) -> str:
    """The step spec JSON the Job would mount, from its ConfigMap child."""
    for volume in job["spec"]["template"]["spec"].get("volumes", []):
        config_map = volume.get("configMap")
        if config_map:
            child = children.get(f"ConfigMap/{config_map['name']}")
            if child and SPEC_KEY in child.get("data", {}):
                return str(child["data"][SPEC_KEY])
    raise ValueError(f"Job {job['metadata']['name']} has no step-spec ConfigMap")


def _local_env(
    container: dict[str, Any], paths: LocalPaths, files: dict[str, Path]
) -> dict[str, str]:
    env = dict(os.environ)
    for var in container.get("env", []):
        if "value" in var:
            env[var["name"]] = str(var["value"])
        elif "valueFrom" in var and var["name"] not in os.environ:
            env.pop(var["name"], None)  # a Secret the laptop does not have: leave unset
    env.update(
        {
            PVC_ROOT_ENV: str(paths.pvc_root),
            CACHE_ENV: str(paths.cache),
            "HF_HOME": str(paths.cache / "hf"),
            TERMINATION_LOG_ENV: str(files["termination"]),
            PROGRESS_FILE_ENV: str(files["progress"]),
            "PYTHONUNBUFFERED": "1",
            "TOKENIZERS_PARALLELISM": "false",
        }
    )
    env.pop("KUBETUNE_PROGRESS_PORT", None)
    cpu = (container.get("resources", {}).get("limits") or {}).get("cpu")
    if cpu:
        threads = max(1, int(float(str(cpu).rstrip("m")) / (1000 if str(cpu).endswith("m") else 1)))
        env["OMP_NUM_THREADS"] = str(min(threads, os.cpu_count() or 1))
    return env


def local_completions(job: dict[str, Any]) -> int:
    """The indexes of an Indexed Job that does not start torchrun (one local process stands
    for them all); 0 for any other Job."""
    if job["spec"].get("completionMode") != "Indexed":
        return 0
    command = [str(a) for a in _container(job).get("command", [])]
    return 0 if command[:1] == ["torchrun"] else int(job["spec"].get("completions") or 1)


def local_command(job: dict[str, Any], spec_file: Path) -> list[str]:
    """The container command rewritten for this machine."""
    container = _container(job)
    args = [str(a) for a in container.get("command", []) + container.get("args", [])]
    step = args[args.index("kubetune_workloads") + 1]
    parallel = (
        int(job["spec"].get("completions") or 1)
        if job["spec"].get("completionMode") == "Indexed" and not local_completions(job)
        else 1
    )
    limits = container.get("resources", {}).get("limits") or {}
    gpus = int(limits.get("nvidia.com/gpu", 0) or 0)
    procs = parallel * max(1, gpus if _cuda_devices() >= parallel * gpus else 0)
    if procs > 1:
        return [
            sys.executable, "-m", "torch.distributed.run", "--standalone",
            f"--nproc-per-node={procs}", "-m", "kubetune_workloads", step, "--spec", str(spec_file),
        ]  # fmt: skip
    return [sys.executable, "-m", "kubetune_workloads", step, "--spec", str(spec_file)]


def _cuda_devices() -> int:
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return len([d for d in visible.split(",") if d.strip()])
    return 0 if not Path("/dev/nvidia0").exists() else len(list(Path("/dev").glob("nvidia[0-9]*")))


def notes_for(job: dict[str, Any]) -> list[str]:
    """What of the Job's resources the local machine cannot honour."""
    container = _container(job)
    limits = container.get("resources", {}).get("limits") or {}
    notes = []
    gpus = int(limits.get("nvidia.com/gpu", 0) or 0)
    if gpus and _cuda_devices() == 0:
        notes.append(f"{gpus} GPU(s) requested: none here, running on CPU")
    if local_completions(job):
        notes.append(f"{job['spec'].get('completions')} pods requested: running as local processes")
    elif job["spec"].get("completionMode") == "Indexed":
        notes.append(
            f"{job['spec'].get('completions')} nodes requested: running as local processes"
        )
    for key in ("nodeSelector", "tolerations", "affinity", "priorityClassName"):
        if job["spec"]["template"]["spec"].get(key):
            notes.append(f"{key} ignored locally")
    return notes


class LocalExecutor:
    """Starts, polls and stops the local processes standing in for Jobs."""

    def __init__(self, paths: LocalPaths) -> None:
        self.paths = paths
        self._procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, job: dict[str, Any], children: dict[str, dict[str, Any]]) -> Execution:
        name = job["metadata"]["name"]
        run_dir = self.paths.runs / name
        run_dir.mkdir(parents=True, exist_ok=True)
        self.paths.logs.mkdir(parents=True, exist_ok=True)
        files = {
            "spec": run_dir / SPEC_KEY,
            "termination": run_dir / "termination-log",
            "progress": run_dir / "progress.json",
            "log": self.paths.logs / f"{name}.log",
        }
        spec = json.loads(step_spec_text(job, children))
        spec.pop("progressPort", None)  # no metrics port locally: progress goes to a file
        files["spec"].write_text(json.dumps(spec, indent=2))
        for stale in (files["termination"], files["progress"]):
            stale.unlink(missing_ok=True)
        env = _local_env(_container(job), self.paths, files)
        if local_completions(job):
            env[LOCAL_COMPLETIONS_ENV] = str(local_completions(job))
        log = files["log"].open("ab")
        log.write(f"--- {now().isoformat()} starting {name}\n".encode())
        log.flush()
        proc = subprocess.Popen(
            die_with_parent(local_command(job, files["spec"])),  # SIGTERM when we die
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=str(self.paths.workdir),
            start_new_session=True,  # Ctrl-C reaches us; we stop the step's whole group
        )
        log.close()
        self._procs[name] = proc
        labels = job["metadata"].get("labels", {})
        return Execution(
            job=name,
            run_id=labels.get(LABEL_RUN_ID, ""),
            state="Running",
            pid=proc.pid,
            pid_start=process_start(proc.pid),
            host=socket.gethostname(),
            started=now().isoformat(),
            log_path=str(files["log"]),
            termination_log=str(files["termination"]),
            progress_file=str(files["progress"]),
        )

    def poll(self, execution: Execution) -> bool:
        """Update a running execution; True when it changed state."""
        proc = self._procs.get(execution.job)
        if proc is None:
            if execution.state == "Running":  # started by an earlier `kubetune run`
                execution.state = "Interrupted"
                return True
            return False
        code = proc.poll()
        if code is None:
            return False
        del self._procs[execution.job]
        execution.exit_code = code
        execution.finished = now().isoformat()
        execution.termination_message = _read(execution.termination_log)
        execution.last_log_line = _last_line(execution.log_path)
        execution.state = "Succeeded" if code == 0 else "Failed"
        if code < 0 and -code in (signal.SIGINT, signal.SIGTERM):
            execution.state = "Interrupted"
        return True

    def running(self) -> int:
        return len(self._procs)

    def stop_all(self) -> None:
        """Stop every running step (SIGINT, then SIGTERM/SIGKILL) so it can resume later."""
        for proc in self._procs.values():
            _stop_group(proc, INTERRUPT_SIGNALS)
        self._procs.clear()

    def stop(self, job: str) -> bool:
        """Stop one Job's process as deleting its pod would (SIGTERM, then SIGKILL).

        False when this run has no process for the Job.
        """
        proc = self._procs.pop(job, None)
        if proc is None:
            return False
        _stop_group(proc, DELETE_SIGNALS)
        return True


# (signal, seconds to wait for the process group to exit) tried in turn.
INTERRUPT_SIGNALS = ((signal.SIGINT, 20.0), (signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0))
DELETE_SIGNALS = ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0))


def _stop_group(
    proc: subprocess.Popen[bytes], signals: tuple[tuple[signal.Signals, float], ...]
) -> None:
    for sig, timeout in signals:
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(timeout=timeout)
            break
        except subprocess.TimeoutExpired:
            continue


def _read(path: str | None) -> str | None:
    if not path or not Path(path).is_file():
        return None
    return Path(path).read_text(errors="replace")[:4096]


def _last_line(path: str | None) -> str | None:
    if not path or not Path(path).is_file():
        return None
    with Path(path).open("rb") as handle:
        handle.seek(0, os.SEEK_END)
        size = handle.tell()
        handle.seek(max(0, size - 8192))
        lines = [ln for ln in handle.read().decode(errors="replace").splitlines() if ln.strip()]
    meaningful = [ln for ln in lines if not ln.startswith(RESULT_LINE_PREFIX)]
    chosen = meaningful or lines
    return chosen[-1] if chosen else None


def _ts(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def observe(job: dict[str, Any], execution: Execution | None) -> ObservedJob:
    """The Job as kube-apiserver would report it, from the local execution."""
    name = job["metadata"]["name"]
    run_id = job["metadata"].get("labels", {}).get(LABEL_RUN_ID, "")
    spec_hash = job["metadata"].get("annotations", {}).get(ANNOTATION_SPEC_HASH)
    suspended = bool(job["spec"].get("suspend"))
    if execution is None or execution.state in ("Pending", "Interrupted"):
        return ObservedJob(name=name, run_id=run_id, suspended=suspended, spec_hash=spec_hash)
    started = _ts(execution.started)
    if execution.state == "Running":
        pod = ObservedPod(name=f"{name}-local", phase="Running", start_time=started)
        return ObservedJob(
            name=name,
            run_id=run_id,
            active=1,
            start_time=started,
            pods=(pod,),
            spec_hash=spec_hash,
        )
    finished = _ts(execution.finished)
    ok = execution.state == "Succeeded"
    pod = ObservedPod(
        name=f"{name}-local",
        phase="Succeeded" if ok else "Failed",
        termination_message=execution.termination_message,
        terminated_reason="Completed" if ok else _terminated_reason(execution.exit_code),
        exit_code=execution.exit_code,
        last_log_line=execution.last_log_line,
        start_time=started,
    )
    when = (finished or now()).isoformat()
    if ok:
        conditions: tuple[dict[str, Any], ...] = (
            {"type": "SuccessCriteriaMet", "status": "True", "lastTransitionTime": when},
            {"type": "Complete", "status": "True", "lastTransitionTime": when},
        )
    else:
        conditions = (
            {"type": "FailureTarget", "status": "True", "reason": "BackoffLimitExceeded",
             "message": "Job has reached the specified backoff limit", "lastTransitionTime": when},
            {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
             "message": "Job has reached the specified backoff limit", "lastTransitionTime": when},
        )  # fmt: skip
    return ObservedJob(
        name=name,
        run_id=run_id,
        # every index of an Indexed Job run by one local process completed with it
        succeeded=max(1, local_completions(job)) if ok else 0,
        failed=0 if ok else 1,
        conditions=conditions,
        start_time=started,
        completion_time=finished if ok else None,
        pods=(pod,),
        spec_hash=spec_hash,
    )


def _terminated_reason(code: int | None) -> str:
    if code is not None and code in (-9, 137):
        return "OOMKilled"
    return "Error"


def read_progress(execution: Execution | None) -> dict[str, Any] | None:
    """The live progress JSON a running step wrote, if any."""
    if execution is None or execution.state != "Running" or not execution.progress_file:
        return None
    path = Path(execution.progress_file)
    try:
        data: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data
