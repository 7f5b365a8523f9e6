"""The KServe oracle itself (tests/helpers/kserve.py, kserve_schema.py): built from the pinned
SDK wheel that scripts/fetch_tools.py unpacks, it rejects unknown fields and wrong types, keeps
Kubernetes' core types closed too, fails with a clear message when the SDK is missing, and
fetch_tools refuses a wheel whose sha256 differs from the pin."""

from __future__ import annotations

import copy
import hashlib
import importlib.util
import zipfile
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import kserve, kserve_schema

REPO = Path(__file__).resolve().parents[2]


def valid() -> dict[str, Any]:
    model = {
        "modelFormat": {"name": "huggingface"},
        "args": ["--backend=vllm"],
        "resources": {"requests": {"cpu": "1"}, "limits": {"nvidia.com/gpu": "1"}},
    }
    storage = [{"uri": "s3://m/base", "mountPath": "/mnt/models/base"}]
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": "m", "namespace": "ml"},
        "spec": {"predictor": {"model": model, "storageUris": storage, "minReplicas": 1}},
    }


def broken(path: str, value: Any) -> dict[str, Any]:
    """``valid()`` with ``value`` set at the dotted ``path``."""
    isvc = copy.deepcopy(valid())
    *parents, last = path.split(".")
    node: Any = isvc
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    node[last] = value
    return isvc


def test_a_valid_inference_service_passes() -> None:
    assert kserve.errors(valid()) == []


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        ("spec.predictor.modle", {"storageUri": "s3://m"}, "'modle' was unexpected"),
        ("spec.predictor.minReplicas", "two", "'two' is not of type 'integer'"),
        ("spec.predictor.storageUris.0.path", "/mnt", "'path' was unexpected"),
        ("spec.predictor.storageUris", [{"mountPath": "/mnt/a"}], "'uri' is a required"),
        ("spec.predictor.model.resources.limit", {"cpu": "1"}, "'limit' was unexpected"),
        ("spec.predictor.model.resources.requests", {"cpu": 1}, "1 is not of type 'string'"),
        ("spec.predictor.model.env", [{"name": "A", "valeu": "b"}], "'valeu' was unexpected"),
        ("spec.predictor.model.args", "--x", "'--x' is not of type 'array'"),
    ],
)
def test_unknown_fields_and_wrong_types_are_rejected(path: str, value: Any, expected: str) -> None:
    found = kserve.errors(broken(path, value))
    assert any(expected in error for error in found), found


def test_the_crd_is_structural_and_names_kserve_v1beta1() -> None:
    crd = kserve.crd()
    assert crd["metadata"]["name"] == "inferenceservices.serving.kserve.io"
    [version] = crd["spec"]["versions"]
    assert (version["name"], version["subresources"]) == ("v1beta1", {"status": {}})
    untyped: list[str] = []

    def walk(node: dict[str, Any], path: str) -> None:
        if "type" not in node and not (
            node.get("x-kubernetes-preserve-unknown-fields")
            or node.get("x-kubernetes-int-or-string")
        ):
            untyped.append(path)
        for key, child in (node.get("properties") or {}).items():
            walk(child, f"{path}.{key}")
        for key in ("items", "additionalProperties"):
            if isinstance(node.get(key), dict):
                walk(node[key], f"{path}.{key}")

    walk(version["schema"]["openAPIV3Schema"], "")
    assert untyped == []
    # Only types defined by neither the SDK nor the Kubernetes client are left open.
    assert kserve_schema.open_types() == {"KnativeDevServingPkgApisServingV1TrafficTarget"}


def test_a_missing_sdk_fails_and_says_to_run_make_tools(tmp_path: Path) -> None:
    with pytest.raises(pytest.fail.Exception, match=r"run `make tools`"):
        kserve_schema.sdk_models_dir(tmp_path / "kserve-sdk")
    (tmp_path / "kserve-sdk").mkdir()
    (tmp_path / "kserve-sdk" / ".version").write_text("0.0.1\n")  # another version
    with pytest.raises(pytest.fail.Exception, match=r"found: 0\.0\.1\); run `make tools`"):
        kserve_schema.sdk_models_dir(tmp_path / "kserve-sdk")


def _fetch_tools() -> Any:
    spec = importlib.util.spec_from_file_location("fetch_tools", REPO / "scripts/fetch_tools.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_fetch_tools_unpacks_a_wheel_only_when_its_sha256_matches(tmp_path: Path) -> None:
    fetch_tools = _fetch_tools()
    wheel = tmp_path / "kserve-9.9.9-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("kserve/models/v1beta1_x.py", "class V1beta1X: ...\n")
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    target = tmp_path / "sdk"
    with pytest.raises(fetch_tools.ToolError, match="sha256"):
        fetch_tools.unpack_wheel(wheel, target, "9.9.9", "0" * 64)
    assert not target.exists()
    assert fetch_tools.unpack_wheel(wheel, target, "9.9.9", digest) == target
    assert (target / "kserve/models/v1beta1_x.py").read_text() == "class V1beta1X: ...\n"
    assert (target / ".version").read_text() == "9.9.9\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == [wheel.name, "sdk"]  # no temp left
