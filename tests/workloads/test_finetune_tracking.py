"""Training you can see: TensorBoard event files on every run, MLflow on a real `mlflow server`
(params, per-step metrics, status, resume), an MLflow server that is down, and no secret
anywhere."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("torch")

from kubetune.api.steps import MANIFEST_FILE, StepResult
from kubetune_workloads.errors import WorkloadError
from kubetune_workloads.finetune import run
from test_finetune_support import (
    make_dataset,
    metrics,
    results,
    save_base,
    single_thread,  # noqa: F401 - autouse fixture
    step_spec,
    subprocess_env,
)

from tests.helpers.moto_s3 import free_port, moto_s3
from tests.helpers.servers import RunningServer, mlflow_server

STEPS = 6
SPEC: dict[str, Any] = {
    "objective": "continued-pretraining",
    "method": "full",
    "hyperparameters": {
        "maxSteps": STEPS,
        "batchSize": 4,
        "maxSeqLength": 32,
        "loggingSteps": 1,
    },
    "evaluation": {"everySteps": 3},
    "checkpointing": {"everySteps": 2, "keepLast": 3},
}
CURVES = {
    "train/loss",
    "train/learning_rate",
    "train/grad_norm",
    "train/epoch",
    "eval/loss",
    "eval/perplexity",
    "perf/tokens_per_second",
    "perf/tokens_seen",
    "perf/peak_memory_gib",
}
USER, PASSWORD = "tracking-user-7f3a", "s3cr3t-pa55-91c2d"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("tracking")
    return {
        "base": save_base(root / "base"),
        "data": make_dataset(root / "data", "text", n_train=24, n_val=4),
    }


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with mlflow_server(tmp_path_factory.mktemp("mlflow")) as running:
        yield running


def _tracked(server: RunningServer, experiment: str, **extra: Any) -> dict[str, Any]:
    mlflow = {"trackingUri": server.url, "experiment": experiment, **extra}
    return {**SPEC, "tracking": {"mlflow": mlflow}}


def _scalars(log_dir: Path) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(log_dir), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def test_every_run_writes_event_files_beside_the_artifact(
    world: dict[str, str], tmp_path: Path
) -> None:
    out = tmp_path / "out"
    result = run(step_spec(out, world["data"], world["base"], spec=SPEC))
    assert result.ok
    log_dir = tmp_path / "tensorboard" / "out"
    assert result.tensorboard_uri == f"file://{log_dir}"
    assert result.report_uri == f"file://{out}/training-report.html"
    assert result.mlflow_run is None

    scalars = _scalars(log_dir)
    assert set(scalars) >= CURVES
    assert [s for s, _ in scalars["train/loss"]] == list(range(1, STEPS + 1))
    assert [s for s, _ in scalars["eval/loss"]] == [3, 6]
    assert all(v > 0 for _, v in scalars["train/grad_norm"])
    assert all(v > 0.01 for _, v in scalars["perf/peak_memory_gib"])  # resident RAM, GiB
    logged = [m["loss"] for m in metrics(out) if "loss" in m]
    assert [v for _, v in scalars["train/loss"]] == pytest.approx(logged, rel=1e-6)

    manifest = json.loads((out / MANIFEST_FILE).read_text())
    assert "training-report.html" in manifest["files"]
    assert not any("tfevents" in name for name in manifest["files"])  # not in the model's hash
    marks = [(m["step"], m["event"]) for m in metrics(out) if "event" in m]
    assert marks == [(2, "checkpoint"), (4, "checkpoint")]


def test_s3_outputs_upload_their_event_files_beside_the_artifact(
    world: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBETUNE_CACHE", str(tmp_path / "cache"))
    with moto_s3(monkeypatch) as s3:
        s3.create_bucket(Bucket="models")
        step = step_spec(tmp_path / "unused", world["data"], world["base"], spec=SPEC)
        result = run(step.model_copy(update={"output_uri": "s3://models/runs/tuned"}))
        assert result.ok
        assert result.tensorboard_uri == "s3://models/runs/tensorboard/tuned"
        assert result.report_uri == "s3://models/runs/tuned/training-report.html"
        listed = s3.list_objects_v2(Bucket="models", Prefix="runs/")["Contents"]
        keys = {obj["Key"] for obj in listed}
        assert "runs/tuned/training-report.html" in keys
        (event_key,) = [k for k in keys if k.startswith("runs/tensorboard/tuned/events.out")]
        local = tmp_path / "events" / Path(event_key).name
        local.parent.mkdir()
        s3.download_file("models", event_key, str(local))
    scalars = _scalars(local.parent)
    assert [s for s, _ in scalars["train/loss"]] == list(range(1, STEPS + 1))


LAZY_PROBE = """
import sys
from pathlib import Path
from kubetune.api.steps import FinetuneStepSpec
from kubetune_workloads.finetune import run, watchers

step = FinetuneStepSpec.model_validate_json(Path(sys.argv[1]).read_text())
watch = watchers.open_watchers(step, True, None)
for sink in watch.sinks:
    sink.write({"step": 1, "loss": 2.0})
watch.finish({})
assert "mlflow" not in sys.modules, "a run without tracking imported mlflow"
print("tensorboard" in sys.modules)
"""


def test_a_run_without_tracking_never_imports_mlflow(world: dict[str, str], tmp_path: Path) -> None:
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(
        step_spec(tmp_path / "out", world["data"], world["base"], spec=SPEC).to_json()
    )
    probe = subprocess.run(
        [sys.executable, "-c", LAZY_PROBE, str(spec_file)],
        capture_output=True,
        text=True,
        timeout=120,
        env=subprocess_env(),
    )
    assert probe.returncode == 0, probe.stderr[-2000:]
    assert probe.stdout.strip() == "True"  # the event files were written
    assert list((tmp_path / "tensorboard" / "out").glob("events.out.tfevents.*"))


def test_mlflow_gets_params_and_every_step_and_never_the_secret(
    world: dict[str, str],
    server: RunningServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    import mlflow

    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", USER)
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", PASSWORD)
    caplog.set_level(logging.DEBUG)
    out = tmp_path / "out"
    spec = _tracked(server, "tiny-tracking", runName="first-try")
    result = run(step_spec(out, world["data"], world["base"], spec=spec))
    assert result.ok and result.mlflow_run is not None

    client = mlflow.MlflowClient(tracking_uri=server.url)
    found = client.get_run(result.mlflow_run.run_id)
    assert found.info.status == "FINISHED" and found.info.run_name == "first-try"
    assert result.mlflow_run.url.startswith(server.url + "/#/experiments/")
    params = found.data.params
    assert params["hyperparameters.maxSteps"] == str(STEPS)
    assert params["hyperparameters.learningRate"] == "0.01"
    assert params["model"] == world["base"] and params["dataset"] == world["data"]
    assert params["method"] == "full" and "dataset.version" in params
    history = client.get_metric_history(found.info.run_id, "train/loss")
    assert [m.step for m in history] == list(range(1, STEPS + 1))
    assert len(client.get_metric_history(found.info.run_id, "eval/loss")) == 2
    assert found.data.tags["kubetune.outputUri"] == f"file://{out}"

    visible = [
        result.termination_message(),
        caplog.text,
        json.dumps(found.data.params),
        json.dumps(found.data.tags),
        server.log.read_text(errors="replace"),
        *(p.read_text(errors="replace") for p in out.rglob("*") if p.is_file()),
        *(p.read_text(errors="replace") for p in (tmp_path / "tensorboard").rglob("*.*")),
    ]
    for text in visible:
        assert PASSWORD not in text and USER not in text


def test_an_unreachable_mlflow_warns_and_training_goes_on(
    world: dict[str, str], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    spec = {**SPEC, "tracking": {"mlflow": {"trackingUri": dead, "experiment": "x"}}}
    caplog.set_level(logging.WARNING)
    result = run(step_spec(tmp_path / "out", world["data"], world["base"], spec=spec))
    assert result.ok and result.mlflow_run is None
    assert result.tensorboard_uri is not None  # the other curves are still written
    warning = next(r.getMessage() for r in caplog.records if "MLflow" in r.getMessage())
    assert dead in warning and "training goes on without MLflow" in warning

    spec["tracking"]["mlflow"]["required"] = True
    with pytest.raises(WorkloadError) as failed:
        run(step_spec(tmp_path / "out2", world["data"], world["base"], spec=spec))
    assert failed.value.reason == "TrackingUnavailable"
    assert dead in failed.value.message
    assert not (tmp_path / "out2").exists()  # it failed before training


RESUMED = {
    **SPEC,
    "hyperparameters": {**SPEC["hyperparameters"], "maxSteps": 150, "loggingSteps": 10},
    "evaluation": {"everySteps": 100},
    "checkpointing": {"everySteps": 10, "keepLast": 1},
}


def _launch(spec_file: Path) -> subprocess.Popen[str]:
    env = subprocess_env(KUBETUNE_TERMINATION_LOG=str(spec_file.parent / "termination"))
    env = {k: v for k, v in env.items() if not k.startswith("MLFLOW_TRACKING_")}
    return subprocess.Popen(
        [sys.executable, "-m", "kubetune_workloads", "finetune", "--spec", str(spec_file)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        text=True,
    )


def test_a_preempted_run_resumes_into_the_same_mlflow_run_and_one_curve(
    world: dict[str, str], server: RunningServer, tmp_path: Path
) -> None:
    import mlflow

    out = tmp_path / "out"
    spec_file = tmp_path / "spec.json"
    spec = {**RESUMED, "tracking": _tracked(server, "tiny-resume")["tracking"]}
    spec_file.write_text(step_spec(out, world["data"], world["base"], spec=spec).to_json())
    first = _launch(spec_file)
    deadline = time.monotonic() + 240
    while not list((out / "checkpoints").glob(f"checkpoint-*/{MANIFEST_FILE}")):
        assert first.poll() is None and time.monotonic() < deadline, "no checkpoint written"
        time.sleep(0.05)
    first.send_signal(signal.SIGTERM)
    assert first.wait(timeout=120) == 1  # Preempted: retryable
    client = mlflow.MlflowClient(tracking_uri=server.url)
    experiment = client.get_experiment_by_name("tiny-resume")
    assert experiment is not None
    (killed,) = client.search_runs([experiment.experiment_id])
    assert killed.info.status == "KILLED"

    assert _launch(spec_file).wait(timeout=300) == 0
    summary = StepResult.model_validate_json((tmp_path / "termination").read_text())
    assert summary.mlflow_run is not None and summary.mlflow_run.run_id == killed.info.run_id
    assert client.get_run(killed.info.run_id).info.status == "FINISHED"
    resumed_at = results(out)["resumed_from_step"]
    events = client.get_metric_history(killed.info.run_id, "events/resume")
    assert [m.step for m in events] == [resumed_at]

    steps = [s for s, _ in _scalars(tmp_path / "tensorboard" / "out")["train/loss"]]
    assert steps == sorted(set(steps)) and steps[-1] == 150  # purged past the checkpoint
    report = (out / "training-report.html").read_text()
    assert f"resumed @{resumed_at}" in report and 'class="marker-resume"' in report
    assert os.path.getsize(out / "metrics.jsonl") > 0
