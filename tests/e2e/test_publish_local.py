"""The issue's "done when", under `kubetune run`: a tiny quickstart-like pipeline publishes its
model to a real `mlflow server` and a real OCI registry (with a password), a FeedbackLoop cycle
publishes its challenger ('challenger'), and its promotion moves 'champion' in both, read back
with their own clients. The secrets never appear in status, events, logs, the workdir, the
MLflow metadata or the OCI manifests."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.test_feedback_local import LOOP, resources, tiny_manifests
from tests.e2e.test_local_run import kubetune, state, status_of
from tests.helpers.servers import RunningServer, mlflow_server, oci_registry
from tests.workloads.publish_helpers import (
    auth_registry,
    host_of,
    manifest_status,
    pull_all,
    read_back_mlflow,
)

USER = "publisher"
PASSWORD = "oci-Pa55word-never-logged-7f3a"
TOKEN = "mlflow-token-never-logged-91bc"


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, RunningServer]]:
    root = tmp_path_factory.mktemp("publish-servers")
    with (
        mlflow_server(root / "mlflow") as mlflow,
        auth_registry(root / "oci", USER, PASSWORD) as oci,
        oci_registry(root / "plain") as plain,
    ):
        yield {"mlflow": mlflow, "oci": oci, "plain": plain}


def publish_block(servers: dict[str, RunningServer], model: str) -> dict[str, Any]:
    secret = {"secretKeyRef": {"name": "registry", "key": "password"}}
    return {
        "mlflow": {
            "trackingUri": servers["mlflow"].url,
            "modelName": model,
            "credentials": {"token": {"secretKeyRef": {"name": "mlflow", "key": "token"}}},
        },
        "oci": {
            "reference": f"{host_of(servers['oci'])}/team/{model}",
            "insecure": True,
            "credentials": {
                "username": {"secretKeyRef": {"name": "registry", "key": "username"}},
                "password": secret,
            },
        },
    }


def with_publish(manifests: Path, servers: dict[str, RunningServer]) -> None:
    path = manifests / "pipeline.yaml"
    docs = list(yaml.safe_load_all(path.read_text()))
    for doc in docs:
        if doc["kind"] == "FinetuneJob":
            doc["spec"]["publish"] = publish_block(servers, "support")
        if doc["kind"] == "FeedbackLoop":
            doc["spec"]["promotion"]["publish"] = publish_block(servers, "support")
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False))


@pytest.mark.slow
def test_publish_then_promotion_moves_champion_in_mlflow_and_oci(
    tmp_path: Path, servers: dict[str, RunningServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    manifests = tiny_manifests(tmp_path)
    with_publish(manifests, servers)
    workdir = tmp_path / "work"
    monkeypatch.setenv("KUBETUNE_OCI_USERNAME", USER)
    monkeypatch.setenv("KUBETUNE_OCI_PASSWORD", PASSWORD)
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", TOKEN)
    result = kubetune("run", "-f", str(manifests), "--workdir", str(workdir), timeout=900)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]

    # the quickstart's model: published, per target, with its lineage
    tune = status_of(workdir, "FinetuneJob/tune")
    entries = {e["target"]: e for e in tune["publish"]}
    assert {e["phase"] for e in entries.values()} == {"Published"}
    first = read_back_mlflow(servers["mlflow"].url, "support", entries["mlflow"]["version"])
    assert first["tags"]["kubetune.artifact_sha256"] == tune["artifactHash"]
    assert first["tags"]["kubetune.dataset_version"]

    # the cycle's challenger: published with 'challenger', then promoted to 'champion'
    loop = status_of(workdir, f"FeedbackLoop/{LOOP}")
    assert loop["championCycle"] == 1, loop
    challenger = {e["target"]: e for e in status_of(workdir, f"FinetuneJob/{LOOP}-c1")["publish"]}
    version = challenger["mlflow"]["version"]
    assert version != entries["mlflow"]["version"]
    found = read_back_mlflow(servers["mlflow"].url, "support", version)
    assert found["alias_champion"] == version
    assert found["alias_challenger"] is None  # cleared from the promoted version
    assert any(k.startswith("kubetune.evaluation.") for k in found["tags"])
    reference = f"{host_of(servers['oci'])}/team/support"
    assert manifest_status(reference, "champion", (USER, PASSWORD)) == (
        200,
        challenger["oci"]["digest"],
    )
    assert manifest_status(reference, "tune-g1", (USER, PASSWORD))[1] == entries["oci"]["digest"]
    published = next(c for c in loop["conditions"] if c["type"] == "ChampionPublished")
    assert published["status"] == "True", published

    # no secret anywhere: output, workdir (status, events, logs, step specs), the registries
    leaks = [result.stdout, result.stderr]
    leaks += [p.read_text(errors="replace") for p in workdir.rglob("*") if p.is_file()
              and p.stat().st_size < 5_000_000]  # fmt: skip
    leaks.append(json.dumps(found) + json.dumps(first))
    for tag in ("champion", "tune-g1"):
        _, digest = manifest_status(reference, tag, (USER, PASSWORD))
        leaks.append(_manifest_and_config(reference, str(digest)))
    for text in leaks:
        assert PASSWORD not in text and TOKEN not in text
    assert "Published" in json.dumps(state(workdir)) and resources(workdir)
    assert os.environ["KUBETUNE_OCI_PASSWORD"] == PASSWORD  # the run really had the secret


def _manifest_and_config(reference: str, digest: str) -> str:
    import requests

    host, repo = reference.split("/", 1)
    auth = (USER, PASSWORD)
    accept = {"Accept": "application/vnd.oci.image.manifest.v1+json"}
    manifest = requests.get(f"http://{host}/v2/{repo}/manifests/{digest}", auth=auth,
                            headers=accept, timeout=10).text  # fmt: skip
    config = json.loads(manifest)["config"]["digest"]
    blob = requests.get(f"http://{host}/v2/{repo}/blobs/{config}", auth=auth, timeout=10).text
    return manifest + blob


EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "publish-local"


@pytest.mark.slow
def test_the_publish_local_example_runs(tmp_path: Path, servers: dict[str, RunningServer]) -> None:
    """examples/publish-local as documented, with the servers' ports of this test."""
    manifests = tmp_path / "example"
    (manifests / "data").mkdir(parents=True)
    (manifests / "data" / "tickets.jsonl").write_bytes(
        (EXAMPLE / "data" / "tickets.jsonl").read_bytes()
    )
    text = (EXAMPLE / "pipeline.yaml").read_text()
    text = text.replace("http://127.0.0.1:5000", servers["mlflow"].url)
    text = text.replace("127.0.0.1:5001", host_of(servers["plain"]))
    (manifests / "pipeline.yaml").write_text(text)
    workdir = tmp_path / "work"
    result = kubetune("run", "-f", str(manifests / "pipeline.yaml"), "--workdir", str(workdir),
                      timeout=900)  # fmt: skip
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    entries = {e["target"]: e for e in status_of(workdir, "FinetuneJob/quickstart")["publish"]}
    found = read_back_mlflow(servers["mlflow"].url, "publish-local", entries["mlflow"]["version"])
    assert found["alias_staging"] == entries["mlflow"]["version"]
    reference = f"{host_of(servers['plain'])}/local/publish-local"
    pulled = pull_all(reference, "quickstart-g1", tmp_path / "pulled")
    assert pulled["digest"] == entries["oci"]["digest"]
    assert pull_all(reference, "staging", tmp_path / "staging")["digest"] == pulled["digest"]
