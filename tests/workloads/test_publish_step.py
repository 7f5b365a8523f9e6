"""The publish step through its entry point, against a real `mlflow server` and a real OCI
registry (Debian's docker-registry) on 127.0.0.1, read back with their own clients (MlflowClient,
oras): versions, lineage tags, aliases, ModelPack media types, byte-for-byte files; promotion;
idempotent retries; unreachable servers, wrong credentials and incomplete artifacts."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubetune.api.steps import MANIFEST_FILE, Producer, PublishStepSpec, StepResult
from kubetune_workloads.__main__ import main, run_step
from kubetune_workloads.manifest import file_sha256, write_manifest

from tests.helpers.servers import RunningServer, mlflow_server, oci_registry
from tests.helpers.tiny import save_tiny_llama
from tests.workloads.publish_helpers import (
    auth_registry,
    host_of,
    manifest_status,
    pull_all,
    read_back_mlflow,
)

PRODUCER = Producer(kind="FinetuneJob", name="support", namespace="default", run_id="g1")
USER, PASSWORD = "kubetune", "s3cret-registry-password-1234"


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, RunningServer]]:
    root = tmp_path_factory.mktemp("servers")
    with (
        mlflow_server(root / "mlflow") as mlflow,
        oci_registry(root / "oci") as registry,
        auth_registry(root / "oci-auth", USER, PASSWORD) as secured,
    ):
        yield {"mlflow": mlflow, "oci": registry, "oci-auth": secured}


def make_artifact(root: Path, seed: int = 0) -> Path:
    """A complete tiny model artifact: HF files, a nested file, the manifest last."""
    save_tiny_llama(root, seed=seed)
    (root / "merged").mkdir()
    shutil.copy(root / "config.json", root / "merged" / "config.json")
    write_manifest(root, artifact="model", producer=PRODUCER, spec={"seed": seed})
    return root


@pytest.fixture(scope="module")
def artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_artifact(tmp_path_factory.mktemp("model") / "out")


def publish_spec(
    artifact: Path, servers: dict[str, RunningServer], *, model: str, repo: str, **extra: Any
) -> PublishStepSpec:
    manifest_file = artifact / MANIFEST_FILE
    manifest = json.loads(manifest_file.read_text()) if manifest_file.is_file() else {}
    body: dict[str, Any] = {
        "producer": PRODUCER.model_dump(by_alias=True),
        "outputUri": f"file://{artifact}",
        "publish": {
            "mlflow": {"trackingUri": servers["mlflow"].url, "modelName": model},
            "oci": {"reference": f"{host_of(servers['oci'])}/{repo}", "insecure": True},
            "aliases": ["challenger"],
        },
        "artifact": {"uri": f"file://{artifact}", "contentHash": manifest.get("contentHash")},
        "version": "support-g1",
        "lineage": {
            "resource": "FinetuneJob/default/support",
            "runId": "g1",
            "baseModel": "hf://acme/tiny-base",
            "dataset": "pvc://artifacts/default/dataset/support/g1",
            "datasetVersion": "v3",
            "metrics": {"eval_loss": 1.25},
        },
    }
    body.update(extra)
    return PublishStepSpec.model_validate(body)


def run(tmp_path: Path, spec: PublishStepSpec) -> tuple[int, StepResult]:
    """Through the pod's entry point: the exit code and the termination message."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "spec.json"
    path.write_text(spec.to_json())
    log = tmp_path / "termination-log"
    import os

    os.environ["KUBETUNE_TERMINATION_LOG"] = str(log)
    try:
        code = main(["publish", "--spec", str(path)])
    finally:
        del os.environ["KUBETUNE_TERMINATION_LOG"]
    return code, StepResult.model_validate_json(log.read_text())


def statuses(result: StepResult) -> dict[str, dict[str, Any]]:
    return {s["target"]: s for s in (result.details or {})["publish"]}


def test_publishes_to_mlflow_and_oci_and_reads_back(
    tmp_path: Path, servers: dict[str, RunningServer], artifact: Path
) -> None:
    spec = publish_spec(artifact, servers, model="support-model", repo="team/support")
    code, result = run(tmp_path, spec)
    assert code == 0 and result.ok, result.message
    by_target = statuses(result)
    assert by_target["mlflow"]["phase"] == "Published" == by_target["oci"]["phase"]

    # MLflow, read with MlflowClient: version, lineage tags, alias, the files themselves
    version = by_target["mlflow"]["version"]
    found = read_back_mlflow(servers["mlflow"].url, "support-model", version, tmp_path / "ml")
    tags = found["tags"]
    manifest = json.loads((artifact / MANIFEST_FILE).read_text())
    assert tags["kubetune.artifact_sha256"] == manifest["contentHash"]
    assert tags["kubetune.dataset_version"] == "v3"
    assert tags["kubetune.base_model"] == "hf://acme/tiny-base"
    assert tags["kubetune.run_id"] == "g1"
    assert tags["kubetune.metric.eval_loss"] == "1.25"
    assert tags["kubetune.artifact_uri"] == f"file://{artifact}"
    assert found["alias_challenger"] == version
    assert found["files"] == _tree(artifact)

    # OCI, read with oras: ModelPack manifest, tags, every file byte for byte
    reference = f"{host_of(servers['oci'])}/team/support"
    pulled = pull_all(reference, "support-g1", tmp_path / "pulled")
    manifest_doc = pulled["manifest"]
    assert manifest_doc["artifactType"] == "application/vnd.cncf.model.manifest.v1+json"
    assert manifest_doc["config"]["mediaType"] == "application/vnd.cncf.model.config.v1+json"
    types = {
        layer["annotations"]["org.cncf.model.filepath"]: layer["mediaType"]
        for layer in manifest_doc["layers"]
    }
    assert types["model.safetensors"] == "application/vnd.cncf.model.weight.v1.raw"
    assert types["config.json"] == "application/vnd.cncf.model.weight.config.v1.raw"
    assert types["tokenizer.json"] == "application/vnd.cncf.model.weight.config.v1.raw"
    assert types["README.md"] == "application/vnd.cncf.model.doc.v1.raw"
    annotations = manifest_doc["annotations"]
    assert (
        json.loads(annotations["dev.kubetune.manifest"])["contentHash"] == manifest["contentHash"]
    )
    assert annotations["dev.kubetune.dataset_version"] == "v3"
    assert pulled["digest"] == by_target["oci"]["digest"]
    assert pull_all(reference, "challenger", tmp_path / "c")["digest"] == pulled["digest"]
    files = _tree(tmp_path / "pulled")
    card = files.pop("README.md")
    assert files == _tree(artifact)
    assert manifest["contentHash"].encode() in card.encode()
    config = pulled["config"]
    assert config["modelfs"]["type"] == "layers"
    assert len(config["modelfs"]["diffIds"]) == len(manifest_doc["layers"])
    assert config["descriptor"]["version"] == "support-g1"


def test_a_retried_publish_reuses_the_version_and_digest(
    tmp_path: Path, servers: dict[str, RunningServer], artifact: Path
) -> None:
    spec = publish_spec(artifact, servers, model="retried", repo="team/retried")
    first = statuses(run(tmp_path / "a", spec)[1])
    second = statuses(run(tmp_path / "b", spec)[1])
    assert first["mlflow"]["version"] == second["mlflow"]["version"] == "1"
    assert first["oci"]["digest"] == second["oci"]["digest"]


def test_promotion_moves_champion_in_mlflow_and_oci(
    tmp_path: Path, servers: dict[str, RunningServer], artifact: Path
) -> None:
    first = publish_spec(artifact, servers, model="promoted", repo="team/promoted")
    old = statuses(run(tmp_path / "a", first)[1])
    newer = make_artifact(tmp_path / "newer", seed=1)
    second = publish_spec(
        newer, servers, model="promoted", repo="team/promoted", version="support-g2"
    )
    new = statuses(run(tmp_path / "b", second)[1])
    assert new["mlflow"]["version"] == "2" and new["oci"]["digest"] != old["oci"]["digest"]

    for published in (old, new):
        body = json.loads(second.to_json())
        body["mode"] = "promote"
        body["promote"] = {
            "alias": "champion",
            "mlflowVersion": published["mlflow"]["version"],
            "ociDigest": published["oci"]["digest"],
            "tags": {"kubetune.evaluation.accuracy": "0.9"},
        }
        promote = PublishStepSpec.model_validate(body)
        out = tmp_path / f"p{published['mlflow']['version']}"
        code, result = run(out, promote)
        assert code == 0, result.message
        found = read_back_mlflow(servers["mlflow"].url, "promoted", published["mlflow"]["version"])
        assert found["alias_champion"] == published["mlflow"]["version"]
        assert found["tags"]["kubetune.evaluation.accuracy"] == "0.9"
        reference = f"{host_of(servers['oci'])}/team/promoted"
        assert pull_all(reference, "champion", out / "pull")["digest"] == published["oci"]["digest"]
        # 'challenger' (on version 2) is cleared only when version 2 itself is promoted
        expected = "2" if published is old else None
        assert found["alias_challenger"] == expected


def test_unreachable_servers_fail_retryably_and_publish_nothing(
    tmp_path: Path, servers: dict[str, RunningServer], artifact: Path
) -> None:
    from tests.helpers.moto_s3 import free_port

    dead = f"127.0.0.1:{free_port()}"
    spec = publish_spec(artifact, servers, model="dead", repo="team/dead")
    spec.publish.mlflow.tracking_uri = f"http://{dead}"  # type: ignore[union-attr]
    spec.publish.oci.reference = f"{dead}/team/dead"  # type: ignore[union-attr]
    code, result = run(tmp_path, spec)
    assert code == 1 and result.reason == "RegistryUnreachable"
    by_target = statuses(result)
    assert by_target["mlflow"]["phase"] == by_target["oci"]["phase"] == "Failed"
    assert (
        dead in by_target["oci"]["message"] and "did not answer" in by_target["mlflow"]["message"]
    )


def test_wrong_registry_credentials_fail_permanently_with_no_tag(
    tmp_path: Path,
    servers: dict[str, RunningServer],
    artifact: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    reference = f"{host_of(servers['oci-auth'])}/team/locked"
    body = json.loads(publish_spec(artifact, servers, model="x", repo="team/locked").to_json())
    body["publish"] = {
        "oci": {
            "reference": reference,
            "insecure": True,
            "credentials": {
                "username": {"secretKeyRef": {"name": "oci", "key": "username"}},
                "password": {"secretKeyRef": {"name": "oci", "key": "password"}},
            },
        }
    }
    spec = PublishStepSpec.model_validate(body)
    monkeypatch.setenv("KUBETUNE_OCI_USERNAME", USER)
    monkeypatch.setenv("KUBETUNE_OCI_PASSWORD", "not-the-password")
    code, result = run(tmp_path / "bad", spec)
    assert code == 2 and result.reason == "PublishUnauthorized"
    assert "wrong credentials" in result.message
    assert "not-the-password" not in result.to_json()
    assert manifest_status(reference, "support-g1", (USER, PASSWORD))[0] == 404

    monkeypatch.setenv("KUBETUNE_OCI_PASSWORD", PASSWORD)
    code, result = run(tmp_path / "good", spec)
    assert code == 0, result.message
    status, digest = manifest_status(reference, "support-g1", (USER, PASSWORD))
    assert status == 200 and digest == statuses(result)["oci"]["digest"]


def test_incomplete_or_other_artifacts_are_refused(
    tmp_path: Path, servers: dict[str, RunningServer], artifact: Path
) -> None:
    partial = tmp_path / "partial"
    shutil.copytree(artifact, partial)
    (partial / MANIFEST_FILE).unlink()
    spec = publish_spec(partial, servers, model="partial", repo="team/partial")
    result = run_step("publish", _write(tmp_path / "s1.json", spec))
    assert result.reason == "InvalidInput" and "not complete" in result.message
    other = publish_spec(artifact, servers, model="other", repo="team/other")
    other.artifact.content_hash = "sha256:" + "0" * 64
    result = run_step("publish", _write(tmp_path / "s2.json", other))
    assert result.reason == "InvalidInput" and "not the artifact" in result.message


def _write(path: Path, spec: PublishStepSpec) -> Path:
    path.write_text(spec.to_json())
    return path


def _tree(root: Path) -> dict[str, str]:
    """relative path -> sha256 of every file (byte-for-byte identity)."""
    return {
        p.relative_to(root).as_posix(): (p.read_text() if p.name == "README.md" else file_sha256(p))
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_secrets_never_reach_logs_results_or_published_metadata(
    tmp_path: Path, servers: dict[str, RunningServer], artifact: Path
) -> None:
    """The pod's command with real secrets in its env (as secretKeyRef would set them): the
    token and the password appear in no output, result, MLflow tag or OCI manifest/config."""
    import os
    import subprocess
    import sys

    token = "mlflow-token-LEAKCHECK-3b9d"
    reference = f"{host_of(servers['oci-auth'])}/team/secret"
    body = json.loads(publish_spec(artifact, servers, model="secret", repo="x/y").to_json())
    body["publish"]["oci"] = {
        "reference": reference,
        "insecure": True,
        "credentials": {
            "username": {"secretKeyRef": {"name": "oci", "key": "username"}},
            "password": {"secretKeyRef": {"name": "oci", "key": "password"}},
        },
    }
    body["publish"]["mlflow"]["credentials"] = {
        "token": {"secretKeyRef": {"name": "mlflow", "key": "token"}}
    }
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(json.dumps(body))
    env = {
        **os.environ,
        "KUBETUNE_OCI_USERNAME": USER,
        "KUBETUNE_OCI_PASSWORD": PASSWORD,
        "MLFLOW_TRACKING_TOKEN": token,
        "KUBETUNE_TERMINATION_LOG": str(tmp_path / "term"),
        "KUBETUNE_LOG_LEVEL": "DEBUG",
    }
    proc = subprocess.run(
        [sys.executable, "-m", "kubetune_workloads", "publish", "--spec", str(spec_file)],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    result = StepResult.model_validate_json((tmp_path / "term").read_text())
    texts = [proc.stdout, proc.stderr, result.to_json()]
    version = statuses(result)["mlflow"]["version"]
    found = read_back_mlflow(servers["mlflow"].url, "secret", version)
    texts.append(json.dumps(found))
    from mlflow import MlflowClient

    run = MlflowClient(tracking_uri=servers["mlflow"].url).get_run(found["run_id"])
    texts.append(json.dumps({"params": run.data.params, "tags": run.data.tags}))
    status, digest = manifest_status(reference, "support-g1", (USER, PASSWORD))
    assert status == 200
    import requests

    host, repo = reference.split("/", 1)
    manifest = requests.get(f"http://{host}/v2/{repo}/manifests/{digest}", auth=(USER, PASSWORD),
                            headers={"Accept": "application/vnd.oci.image.manifest.v1+json"},
                            timeout=10).text  # fmt: skip
    config = json.loads(manifest)["config"]["digest"]
    texts.append(manifest)
    texts.append(requests.get(f"http://{host}/v2/{repo}/blobs/{config}", auth=(USER, PASSWORD),
                              timeout=10).text)  # fmt: skip
    for text in texts:
        assert token not in text and PASSWORD not in text
