"""The InferenceService CRD built from KServe's SDK (tests/helpers/kserve_schema.py), served by
the API emulator: it admits a valid object, prunes a misspelt field instead of storing it, and
refuses a wrong type, as kube-apiserver would with KServe's CRD."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.emulator import ApiError, Emulator, start_emulator
from tests.helpers import kserve

ISVCS = "inferenceservices.serving.kserve.io"
NS = "ml"


def isvc(name: str, **predictor: Any) -> dict[str, Any]:
    model = {"modelFormat": {"name": "huggingface"}, "storageUri": "s3://m/full"}
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"predictor": {"model": model, **predictor}},
    }


@pytest.fixture()
def emu() -> Iterator[Emulator]:
    with start_emulator([kserve.crd()]) as emulator:
        emulator.create("namespaces", {"metadata": {"name": NS}})
        yield emulator


def test_the_emulator_admits_a_valid_object_and_prunes_a_misspelt_field(emu: Emulator) -> None:
    created = emu.create(ISVCS, isvc("good", minReplicas=1), admit=True)
    assert created["spec"]["predictor"]["minReplicas"] == 1
    created = emu.create(ISVCS, isvc("typo", modle={"storageUri": "s3://m"}), admit=True)
    assert "modle" not in created["spec"]["predictor"]
    assert created["spec"]["predictor"]["model"]["storageUri"] == "s3://m/full"


def test_the_emulator_refuses_a_wrong_type(emu: Emulator) -> None:
    with pytest.raises(ApiError, match=r"spec\.predictor\.minReplicas in body must be of type"):
        emu.create(ISVCS, isvc("bad", minReplicas="two"), admit=True)
    assert emu.get(ISVCS, NS, "bad") is None
