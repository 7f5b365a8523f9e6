"""KServe's InferenceService API as a validation oracle for what kubetune renders.

The schema is built from KServe's published Python SDK (PyPI ``kserve``, pinned in
scripts/fetch_tools.py, unpacked by ``make tools``): see tests/helpers/kserve_schema.py for the
source, the mapping, and why not KServe's CRD YAML. Every object is closed (a field KServe's API
server would prune is an error here, as with ``fieldValidation=Strict``). When the SDK is not
unpacked, the test using the oracle fails and says to run ``make tools``.

Two storage rules that KServe's validating webhook enforces and a schema cannot express are
checked here as well, restated in our words: a predictor names its model storage either by
``model.storageUri`` or by ``storageUris``, never both; and the mount paths of the non-PVC
entries of ``storageUris`` must share a parent directory below ``/``.
"""

from __future__ import annotations

import functools
import os
from typing import Any

import jsonschema

from tests.helpers import kserve_schema

#: The CRD document the integration tests install into the API emulator.
crd = kserve_schema.crd


def _closed(schema: Any) -> Any:
    """A JSON Schema copy of a structural schema: objects with properties admit no others."""
    if isinstance(schema, list):
        return [_closed(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: _closed(v) for k, v in schema.items()}
    if (
        "properties" in out
        and "additionalProperties" not in out
        and not out.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


@functools.cache
def validator() -> jsonschema.Draft4Validator:
    """A validator of v1beta1 InferenceServices."""
    return jsonschema.Draft4Validator(_closed(kserve_schema.inference_service_schema()))


def _common_parent(paths: list[str]) -> str:
    return os.path.commonpath(paths) if paths else "/"


def webhook_errors(isvc: dict[str, Any]) -> list[str]:
    """The webhook's storage rules on the predictor (see the module docstring)."""
    predictor = isvc["spec"]["predictor"]
    many = predictor.get("storageUris")
    errors = []
    if many is not None and (predictor.get("model") or {}).get("storageUri") is not None:
        errors.append("storageUri and storageUris are mutually exclusive")
    paths = [
        s.get("mountPath", "/mnt/models")
        for s in many or []
        if not str(s.get("uri", "")).startswith("pvc://")
    ]
    if len(paths) > 1 and _common_parent(paths) == "/":
        errors.append(f"storage paths {paths} have no common parent beyond root")
    return errors


def errors(isvc: dict[str, Any]) -> list[str]:
    """Every way ``isvc`` breaks KServe's schema or the webhook's storage rules."""
    found = [
        f"{'.'.join(str(p) for p in e.absolute_path)}: {e.message}"
        for e in validator().iter_errors(isvc)
    ]
    return found + webhook_errors(isvc)
