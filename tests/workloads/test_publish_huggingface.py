"""The publish step's Hugging Face Hub target, with the real `huggingface_hub` client pointed at
a request-level fake of the Hub API on 127.0.0.1 (no local Hub server exists in the package
registries): repository creation, the preupload check and the one commit carrying every file
and the model card; a refused token; the token never leaves the Authorization header."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
from kubetune.api.steps import MANIFEST_FILE, PublishStepSpec, StepResult
from kubetune_workloads.__main__ import main

from tests.workloads.test_publish_step import make_artifact

TOKEN = "hf_test_token_never_logged_5d1e"


class FakeHub(BaseHTTPRequestHandler):
    """The Hub endpoints a commit of small files uses; everything else is a 404."""

    requests: ClassVar[list[dict[str, Any]]] = []
    accept_token = TOKEN

    def log_message(self, *args: Any) -> None:  # quiet
        pass

    def _answer(self, code: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.requests.append(
            {"path": self.path, "auth": self.headers.get("Authorization"), "body": body}
        )
        if self.headers.get("Authorization") != f"Bearer {self.accept_token}":
            self._answer(401, {"error": "Invalid credentials in Authorization header"})
        elif self.path == "/api/repos/create":
            asked = json.loads(body)
            repo = "/".join(p for p in (asked.get("organization"), asked["name"]) if p)
            self._answer(200, {"url": f"http://{self.headers['Host']}/{repo}"})
        elif self.path == "/api/validate-yaml":  # the client checks the card's front matter
            self._answer(200, {"errors": [], "warnings": []})
        elif "/preupload/" in self.path:
            files = json.loads(body)["files"]
            self._answer(
                200,
                {
                    "files": [
                        {"path": f["path"], "uploadMode": "regular", "shouldIgnore": False}
                        for f in files
                    ]
                },
            )
        elif "/commit/" in self.path:
            repo = self.path.split("/api/models/", 1)[1].split("/commit/", 1)[0]
            url = f"http://{self.headers['Host']}/{repo}/commit/{'a' * 40}"
            self._answer(200, {"commitUrl": url, "commitOid": "a" * 40})
        else:
            self._answer(404, {"error": f"not faked: {self.path}"})

    def do_GET(self) -> None:
        self.requests.append({"path": self.path, "auth": self.headers.get("Authorization")})
        self._answer(404, {"error": f"not faked: {self.path}"})


@pytest.fixture
def hub() -> Iterator[str]:
    FakeHub.requests = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeHub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


def hub_spec(artifact: Path, endpoint: str) -> PublishStepSpec:
    manifest = json.loads((artifact / MANIFEST_FILE).read_text())
    return PublishStepSpec.model_validate(
        {
            "producer": {"kind": "FinetuneJob", "name": "t", "namespace": "ml", "runId": "g1"},
            "outputUri": f"file://{artifact}",
            "publish": {
                "huggingface": {
                    "repo": "hf://acme/tiny",
                    "token": {"secretKeyRef": {"name": "hf", "key": "token"}},
                    "endpoint": endpoint,
                }
            },
            "artifact": {"uri": f"file://{artifact}", "contentHash": manifest["contentHash"]},
            "version": "t-g1",
            "lineage": {"resource": "FinetuneJob/ml/t", "runId": "g1", "metrics": {"loss": 2.0}},
        }
    )


def run(
    tmp_path: Path, spec: PublishStepSpec, monkeypatch: pytest.MonkeyPatch
) -> tuple[int, StepResult]:
    (tmp_path / "spec.json").write_text(spec.to_json())
    monkeypatch.setenv("KUBETUNE_TERMINATION_LOG", str(tmp_path / "term"))
    code = main(["publish", "--spec", str(tmp_path / "spec.json")])
    return code, StepResult.model_validate_json((tmp_path / "term").read_text())


def committed_files(body: bytes) -> dict[str, bytes]:
    files = {}
    for line in body.decode().splitlines():
        item = json.loads(line)
        if item["key"] == "file":
            files[item["value"]["path"]] = base64.b64decode(item["value"]["content"])
    return files


def test_one_commit_carries_every_file_and_the_card(
    tmp_path: Path, hub: str, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    artifact = make_artifact(tmp_path / "model")
    monkeypatch.setenv("KUBETUNE_HF_PUBLISH_TOKEN", TOKEN)
    code, result = run(tmp_path, hub_spec(artifact, hub), monkeypatch)
    assert code == 0, result.message
    [entry] = (result.details or {})["publish"]
    assert entry["phase"] == "Published" and entry["version"] == "a" * 40
    create = next(r for r in FakeHub.requests if r["path"] == "/api/repos/create")
    assert json.loads(create["body"])["visibility"] == "private"
    [commit] = [r for r in FakeHub.requests if "/commit/" in r["path"]]
    assert commit["path"] == "/api/models/acme/tiny/commit/main"
    files = committed_files(commit["body"])
    card = files.pop("README.md").decode()
    expected = {
        p.relative_to(artifact).as_posix(): p.read_bytes()
        for p in artifact.rglob("*")
        if p.is_file()
    }
    assert files == expected  # every file, byte for byte
    manifest = json.loads((artifact / MANIFEST_FILE).read_text())
    assert manifest["contentHash"] in card and "| loss | 2 |" in card
    assert all(r["auth"] == f"Bearer {TOKEN}" for r in FakeHub.requests)
    out, err = capfd.readouterr()
    assert TOKEN not in out + err + result.to_json() + card


def test_a_refused_token_fails_permanently(
    tmp_path: Path, hub: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    artifact = make_artifact(tmp_path / "model")
    monkeypatch.setenv("KUBETUNE_HF_PUBLISH_TOKEN", "hf_wrong")
    code, result = run(tmp_path, hub_spec(artifact, hub), monkeypatch)
    assert code == 2 and result.reason == "PublishUnauthorized"
    assert not [r for r in FakeHub.requests if "/commit/" in r["path"]]
    assert "hf_wrong" not in result.to_json()
