"""`kubetune run` on examples/finetune-tracking.yaml (shortened) against a real `mlflow server`:
it prints the training report, the TensorBoard files and the MLflow run, which is FINISHED."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.e2e.test_local_run import kubetune, status_of
from tests.helpers.servers import mlflow_server

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "finetune-tracking.yaml"
USER, PASSWORD = "e2e-tracking-user-52d1", "e2e-pa55word-0b9e"


def _shortened(server_url: str) -> list[dict]:
    docs = list(yaml.safe_load_all(EXAMPLE.read_text()))
    corpus = REPO / "examples" / "quickstart" / "data" / "general.txt"
    docs[0]["spec"]["sources"][0]["uri"] = f"file://{corpus}"
    spec = docs[1]["spec"]
    spec["hyperparameters"].update(maxSteps=8, loggingSteps=2, warmupSteps=0)
    spec["evaluation"]["everySteps"] = 4
    spec["checkpointing"]["everySteps"] = 4
    spec["tracking"]["mlflow"]["trackingUri"] = server_url
    spec["tracking"]["mlflow"]["credentials"] = {
        "username": {"secretKeyRef": {"name": "mlflow-auth", "key": "username"}},
        "password": {"secretKeyRef": {"name": "mlflow-auth", "key": "password"}},
    }
    return docs


def test_kubetune_run_prints_where_training_can_be_seen(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mlflow = pytest.importorskip("mlflow")
    # locally a secretKeyRef env var comes from the caller's shell
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", USER)
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", PASSWORD)
    with mlflow_server(tmp_path / "mlflow") as server:
        manifests = tmp_path / "tracking.yaml"
        manifests.write_text(yaml.safe_dump_all(_shortened(server.url)))
        workdir = tmp_path / "work"
        done = kubetune("run", "-f", str(manifests), "--workdir", str(workdir), timeout=600)
        assert done.returncode == 0, done.stdout + done.stderr
        status = status_of(workdir, "FinetuneJob/tracked-model")
        report = status["reportUri"]
        assert report == status["outputUri"] + "/training-report.html"
        assert Path(report.removeprefix("file://")).is_file()
        events = Path(status["tensorboardUri"].removeprefix("file://"))
        assert list(events.glob("events.out.tfevents.*"))
        printed = " ".join(done.stdout.split())
        assert f"report: {report}" in printed
        assert f"tensorboard: {status['tensorboardUri']}" in printed
        assert f"mlflow run: {status['mlflow']['url']}" in printed
        run = mlflow.MlflowClient(tracking_uri=server.url).get_run(status["mlflow"]["runId"])
        assert run.info.status == "FINISHED"
        assert run.data.params["hyperparameters.maxSteps"] == "8"
        seen = [done.stdout.encode(), done.stderr.encode(), str(run.data).encode()]
        seen += [p.read_bytes() for p in workdir.rglob("*") if p.is_file()]
        seen.append(server.log.read_bytes())
    assert not [text for text in seen if PASSWORD.encode() in text or USER.encode() in text]
