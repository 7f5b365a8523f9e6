"""Reading published models back with the registries' own clients (oras, MlflowClient), and an
OCI registry that requires a password (docker-registry with an htpasswd file)."""

from __future__ import annotations

import crypt  # bcrypt hashes for the registry's htpasswd file (no bcrypt package here)
import json
import os
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from kubetune_workloads.manifest import file_sha256

from tests.helpers.moto_s3 import free_port
from tests.helpers.servers import RunningServer

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def host_of(server: RunningServer) -> str:
    return server.url.split("://", 1)[1]


@contextmanager
def auth_registry(root: Path, user: str, password: str) -> Iterator[RunningServer]:
    """docker-registry with htpasswd (basic) auth on 127.0.0.1, plain HTTP."""
    binary = shutil.which("docker-registry")
    assert binary, "docker-registry is not installed"
    root.mkdir(parents=True, exist_ok=True)
    (root / "htpasswd").write_text(
        f"{user}:{crypt.crypt(password, crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=16))}\n"
    )
    port = free_port()
    (root / "config.yml").write_text(
        "version: 0.1\n"
        f"storage:\n  filesystem:\n    rootdirectory: {root / 'data'}\n"
        f"http:\n  addr: 127.0.0.1:{port}\n  secret: kubetune-tests\n"
        f"auth:\n  htpasswd:\n    realm: kubetune-tests\n    path: {root / 'htpasswd'}\n"
        "log:\n  level: warn\n"
    )
    log = root / "server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([binary, "serve", str(root / "config.yml")], stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(url + "/v2/", timeout=2)
            except urllib.error.HTTPError as exc:
                if exc.code == 401:
                    break
            except OSError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.3)
        yield RunningServer(url=url, root=root, log=log)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=15)


def pull_all(
    reference: str, tag: str, outdir: Path, auth: tuple[str, str] | None = None
) -> dict[str, Any]:
    """Pull ``reference:tag`` with oras: the manifest, its digest, the config and every layer
    written to ``outdir`` under its ``org.cncf.model.filepath``."""
    import oras.client

    host = reference.split("/", 1)[0]
    client = oras.client.OrasClient(hostname=host, insecure=True)
    if auth is not None:
        client.auth.set_basic_auth(*auth)
    target = f"{reference}:{tag}"
    container = client.get_container(target)
    response = client.do_request(
        f"http://{container.manifest_url()}", "GET", headers={"Accept": OCI_MANIFEST}
    )
    if response.status_code != 200:
        raise RuntimeError(f"{target}: {response.status_code} {response.text[:200]}")
    manifest = client.get_manifest(target)
    config_path = outdir.parent / f"{outdir.name}.config.json"
    client.download_blob(container, manifest["config"]["digest"], str(config_path))
    for layer in manifest["layers"]:
        path = outdir / layer["annotations"]["org.cncf.model.filepath"]
        client.download_blob(container, layer["digest"], str(path))
        assert "sha256:" + file_sha256(path) == layer["digest"]
    return {
        "manifest": manifest,
        "digest": response.headers["Docker-Content-Digest"],
        "config": json.loads(config_path.read_text()),
    }


def manifest_status(reference: str, tag: str, auth: tuple[str, str]) -> tuple[int, str | None]:
    """(HTTP status, digest) of ``reference:tag`` read with basic auth (the htpasswd registry;
    oras would take its Basic realm for a token service)."""
    import requests

    host, repo = reference.split("/", 1)
    response = requests.get(f"http://{host}/v2/{repo}/manifests/{tag}", auth=auth,
                            headers={"Accept": OCI_MANIFEST}, timeout=10)  # fmt: skip
    return response.status_code, response.headers.get("Docker-Content-Digest")


def read_back_mlflow(
    url: str, model: str, version: str, download_to: Path | None = None
) -> dict[str, Any]:
    """A model version as MlflowClient sees it: tags, aliases, and its files (sha256)."""
    from mlflow import MlflowClient
    from mlflow.artifacts import download_artifacts

    client = MlflowClient(tracking_uri=url, registry_uri=url)
    found = client.get_model_version(model, version)
    registered = client.get_registered_model(model)
    result: dict[str, Any] = {
        "tags": dict(found.tags),
        "source": found.source,
        "run_id": found.run_id,
        **{f"alias_{k}": v for k, v in registered.aliases.items()},
    }
    result.setdefault("alias_challenger", None)
    result.setdefault("alias_champion", None)
    if download_to is not None:
        local = Path(download_artifacts(artifact_uri=found.source, dst_path=str(download_to),
                                        tracking_uri=url))  # fmt: skip
        result["files"] = {
            p.relative_to(local).as_posix(): file_sha256(p)
            for p in sorted(local.rglob("*"))
            if p.is_file()
        }
    return result
