"""
The emulator's admission, an oracle independent of kubetune's own validation:

* custom resources from the CRD YAML alone (:mod:`tests.emulator.crd_admission`): every
  example manifest is admitted; the structural schema, pruning, defaults, CEL rules
  (``oldSelf``, ``messageExpression``, ``fieldPath``, ``reason``) and ratcheting;
* built-in kinds with Kubernetes' schemas (:mod:`tests.emulator.builtins`): 400 on wrong
  types, unknown fields dropped with a warning (400 with ``fieldValidation=Strict``), 422
  with the server's wording for what the Go validation refuses.
"""

from __future__ import annotations

import ast
import copy
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import kubernetes_validate
import pytest
import pytest_asyncio
import yaml

from tests.emulator import ApiError, JsonDict, start_emulator
from tests.emulator.builtins import K8S_VERSION, DecodeError, decode, validate
from tests.emulator.crd_admission import CrdAdmission, CrdAdmissionRegistry
from tests.emulator.resources import load_crd_files
from tests.integration.conftest import compression, dataset, evaluation, finetune

ROOT = Path(__file__).resolve().parents[2]
NS = "default"


@pytest.fixture(scope="module")
def crds() -> list[JsonDict]:
    return load_crd_files(ROOT / "crds")


@pytest.fixture(scope="module")
def registry(crds: list[JsonDict]) -> CrdAdmissionRegistry:
    return CrdAdmissionRegistry(crds)


def errors_of(
    registry: CrdAdmissionRegistry, obj: JsonDict, old: JsonDict | None = None
) -> list[str]:
    admission = registry.find(obj)
    assert admission is not None, obj.get("kind")
    return [str(error) for error in admission.admit(obj, old).errors]


def _example_documents() -> list[tuple[str, JsonDict]]:
    docs = []
    for path in sorted((ROOT / "examples").rglob("*.yaml")):
        for index, doc in enumerate(yaml.safe_load_all(path.read_text())):
            if isinstance(doc, dict) and str(doc.get("apiVersion", "")).startswith("kubetune.dev/"):
                doc.setdefault("metadata", {}).setdefault("namespace", NS)
                docs.append((f"{path.relative_to(ROOT)}#{index}", doc))
    return docs


EXAMPLES = _example_documents()


def test_the_emulator_imports_nothing_of_the_code_under_test() -> None:
    for path in sorted((ROOT / "tests" / "emulator").glob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            for name in names:
                top = name.split(".")[0]
                assert top not in ("kubetune", "kubetune_workloads"), f"{path.name} imports {name}"


# --------------------------------------------------------------------------------------------------
# Custom resources
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("source", "doc"), EXAMPLES, ids=[s for s, _ in EXAMPLES])
def test_every_example_is_admitted(
    registry: CrdAdmissionRegistry, source: str, doc: JsonDict
) -> None:
    admitted = registry.find(doc).admit(doc)  # type: ignore[union-attr]
    assert [str(e) for e in admitted.errors] == []
    assert admitted.warnings == []  # no field of the examples is unknown to the CRDs


def test_the_test_manifests_are_admitted_and_defaulted(registry: CrdAdmissionRegistry) -> None:
    for manifest in (dataset(), finetune(), compression(), evaluation()):
        assert errors_of(registry, manifest) == []
    admitted = registry.find(finetune()).admit(finetune())  # type: ignore[union-attr]
    assert admitted.object["spec"]["lora"]["dropout"] == 0.05  # a default of the CRD
    assert admitted.object["spec"]["hyperparameters"]["maxSteps"] == 10  # kept


BLOCKED = (
    '<nil>: Invalid value: "null": some validation rules were not checked because the object'
    " was invalid; correct the existing errors to complete validation"
)


def _set(path: str, value: Any) -> Callable[[JsonDict], None]:
    def mutate(obj: JsonDict) -> None:
        *parents, last = path.split(".")
        node = obj
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value

    return mutate


def _drop(path: str) -> Callable[[JsonDict], None]:
    def mutate(obj: JsonDict) -> None:
        *parents, last = path.split(".")
        node = obj
        for part in parents:
            node = node[part]
        del node[last]

    return mutate


REFUSED: dict[str, tuple[Callable[[], JsonDict], Callable[[JsonDict], None], list[str]]] = {
    "required": (
        finetune,
        _set("spec.lora", {"alpha": 16}),
        ["spec.lora.r: Required value", BLOCKED],
    ),
    "type": (
        finetune,
        _set("spec.lora.r", "8"),
        [
            'spec.lora.r: Invalid value: "string": spec.lora.r in body must be of type integer:'
            ' "string"',
            BLOCKED,
        ],
    ),
    "null in a non-nullable field": (
        finetune,
        _set("spec.model.base.uri", None),
        [
            'spec.model.base.uri: Invalid value: "null": spec.model.base.uri in body must be of'
            ' type string: "null"',
            BLOCKED,
        ],
    ),
    "enum": (
        finetune,
        _set("spec.method", "dpo"),
        [
            'spec.method: Unsupported value: "dpo": supported values: "full", "lora", "qlora"',
            BLOCKED,
        ],
    ),
    "pattern": (
        finetune,
        _set("spec.model.base.uri", "ftp://x"),
        [
            'spec.model.base.uri: Invalid value: "ftp://x": spec.model.base.uri in body should'
            " match '^(hf|s3|pvc|file)://\\S+$'"
        ],
    ),
    "minimum": (
        finetune,
        _set("spec.lora.r", 0),
        ["spec.lora.r: Invalid value: 0: spec.lora.r in body should be greater than or equal to 1"],
    ),
    "metadata name": (
        finetune,
        _set("metadata.name", "Assistant"),
        [
            'metadata.name: Invalid value: "Assistant": a lowercase RFC 1123 subdomain must'
            " consist of lower case alphanumeric characters, '-' or '.', and must start and end"
            " with an alphanumeric character (e.g. 'example.com', regex used for validation is"
            " '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
        ],
    ),
    "label value": (
        finetune,
        _set("metadata.labels", {"team": "ml team"}),
        ['metadata.labels: Invalid value: "ml team": a valid label must be an empty string or'],
    ),
    "CEL rule with a message": (
        finetune,
        _set("spec.hyperparameters", {"learningRate": 0.001}),
        ['spec.hyperparameters: Invalid value: "object": set epochs or maxSteps'],
    ),
    "CEL rule with a fieldPath": (
        finetune,
        _set("spec.method", "qlora"),
        ['spec.quantization.bits: Invalid value: "object": qlora requires 4-bit quantization'],
    ),
    "CEL rule on a list": (
        compression,
        _set("spec.steps", [{"quantize": {"bits": 4}}, {"quantize": {"bits": 8}}]),
        ["spec.steps"],
    ),
    "CEL exactly-one": (
        finetune,
        _set("spec.dataset", {"name": "tickets", "uri": "s3://a/b"}),
        ['spec.dataset: Invalid value: "object": set exactly one of name or uri'],
    ),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_refused_custom_resources(registry: CrdAdmissionRegistry, case: str) -> None:
    make, mutate, expected = REFUSED[case]
    obj = make()
    mutate(obj)
    errors = errors_of(registry, obj)
    for text in expected:
        assert any(error.startswith(text) for error in errors), (text, errors)


def test_pruning_and_defaulting(registry: CrdAdmissionRegistry) -> None:
    obj = finetune()
    obj["spec"]["lora"]["rank"] = 8  # a typo: pruned, with a warning
    obj["metadata"]["color"] = "blue"  # not an ObjectMeta field
    obj["status"] = {"phase": "Running", "bogus": 1}
    admitted = registry.find(obj).admit(obj)  # type: ignore[union-attr]
    assert admitted.errors == []
    assert sorted(admitted.warnings) == [
        'unknown field "metadata.color"',
        'unknown field "spec.lora.rank"',
        'unknown field "status.bogus"',
    ]
    assert "rank" not in admitted.object["spec"]["lora"]
    assert admitted.object["spec"]["lora"]["targetModules"] == ["all-linear"]


TOY_CRD: JsonDict = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "gizmos.example.com"},
    "spec": {
        "group": "example.com",
        "scope": "Namespaced",
        "names": {"plural": "gizmos", "singular": "gizmo", "kind": "Gizmo"},
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "subresources": {"status": {}},
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "spec": {
                                "type": "object",
                                "required": ["size"],
                                "x-kubernetes-validations": [
                                    {
                                        "rule": "self.size <= self.maxSize",
                                        "messageExpression": (
                                            "'size ' + string(self.size)"
                                            " + ' is over ' + string(self.maxSize)"
                                        ),
                                        "fieldPath": ".size",
                                    },
                                    {
                                        "rule": "self.owner == oldSelf.owner",
                                        "message": "owner is immutable",
                                        "reason": "FieldValueForbidden",
                                    },
                                ],
                                "properties": {
                                    "size": {"type": "integer", "maximum": 100},
                                    "maxSize": {"type": "integer", "default": 10},
                                    "owner": {
                                        "type": "string",
                                        "default": "nobody",
                                        "maxLength": 8,
                                    },
                                    "ratio": {"type": "number", "nullable": True},
                                    "at": {"type": "string", "format": "date-time"},
                                    "extra": {
                                        "type": "object",
                                        "x-kubernetes-preserve-unknown-fields": True,
                                    },
                                    "ports": {
                                        "type": "array",
                                        "maxItems": 2,
                                        "x-kubernetes-list-type": "map",
                                        "x-kubernetes-list-map-keys": ["name"],
                                        "items": {
                                            "type": "object",
                                            "required": ["name"],
                                            "properties": {
                                                "name": {"type": "string"},
                                                "port": {"type": "integer"},
                                            },
                                            "x-kubernetes-validations": [
                                                {
                                                    "rule": "self.port >= oldSelf.port",
                                                    "message": "ports only grow",
                                                }
                                            ],
                                        },
                                    },
                                    "tags": {
                                        "type": "array",
                                        "x-kubernetes-list-type": "set",
                                        "items": {"type": "string"},
                                    },
                                },
                            },
                            "status": {
                                "type": "object",
                                "properties": {"phase": {"type": "string"}},
                            },
                        },
                    }
                },
            }
        ],
    },
}


def gizmo(**spec: Any) -> JsonDict:
    return {
        "apiVersion": "example.com/v1",
        "kind": "Gizmo",
        "metadata": {"name": "g", "namespace": NS},
        "spec": {"size": 5, **spec},
    }


def test_cel_message_expression_field_path_and_defaults() -> None:
    toy = CrdAdmission(TOY_CRD)
    admitted = toy.admit(gizmo())
    assert admitted.errors == []
    assert admitted.object["spec"] == {"size": 5, "maxSize": 10, "owner": "nobody"}
    assert [str(e) for e in toy.admit(gizmo(size=20)).errors] == [
        'spec.size: Invalid value: "object": size 20 is over 10'
    ]
    assert [str(e) for e in toy.admit(gizmo(size=200, maxSize=300)).errors] == [
        "spec.size: Invalid value: 200: spec.size in body should be less than or equal to 100"
    ]
    assert toy.admit(gizmo(ratio=None, extra={"any": {"thing": [1]}})).errors == []
    assert toy.admit(gizmo(extra={"any": 1})).object["spec"]["extra"] == {"any": 1}
    assert [str(e) for e in toy.admit(gizmo(owner="somebody-else")).errors] == [
        "spec.owner: Too long: may not be more than 8 bytes",
        BLOCKED,
    ]
    assert next(str(e) for e in toy.admit(gizmo(at="yesterday")).errors) == (
        'spec.at: Invalid value: "yesterday": spec.at in body must be of type date-time:'
        ' "yesterday"'
    )
    assert toy.admit(gizmo(at="2024-05-01T10:00:00.5+02:00")).errors == []
    ports = [{"name": "a", "port": 1}, {"name": "a", "port": 2}]
    assert 'spec.ports[1]: Duplicate value: map[string]interface {}{"name":"a"}' in [
        str(e) for e in toy.admit(gizmo(ports=ports)).errors
    ]
    assert [str(e) for e in toy.admit(gizmo(tags=["x", "x"])).errors] == [
        'spec.tags[1]: Duplicate value: "x"',
    ]


def test_transition_rules_and_ratcheting() -> None:
    toy = CrdAdmission(TOY_CRD)
    old = toy.admit(gizmo(owner="alice", ports=[{"name": "http", "port": 80}])).object
    changed = copy.deepcopy(old)
    changed["spec"]["owner"] = "bob"
    assert [str(e) for e in toy.admit(changed, old).errors] == [
        "spec: Forbidden: owner is immutable"
    ]
    # correlated list-map items: the transition rule sees the old item with the same key
    shrunk = copy.deepcopy(old)
    shrunk["spec"]["ports"] = [{"name": "http", "port": 70}, {"name": "new", "port": 1}]
    assert [str(e) for e in toy.admit(shrunk, old).errors] == [
        'spec.ports[0]: Invalid value: "object": ports only grow'
    ]
    # on create, transition rules are not evaluated
    assert toy.admit(gizmo(owner="bob")).errors == []
    # ratcheting: an invalid value that is not changed by an update is not reported again
    stored = gizmo(size=500)
    stored["spec"].update(maxSize=1000, owner="nobody")
    relabelled = copy.deepcopy(stored)
    relabelled["metadata"]["labels"] = {"a": "b"}
    assert toy.admit(relabelled, stored).errors == []
    stored_status = copy.deepcopy(stored)
    stored_status["status"] = {"phase": "Running"}
    assert toy.admit(stored_status, stored).errors == []
    worse = copy.deepcopy(stored)
    worse["spec"]["size"] = 600
    assert [str(e) for e in toy.admit(worse, stored).errors] == [
        "spec.size: Invalid value: 600: spec.size in body should be less than or equal to 100"
    ]


def test_a_toy_crd_is_admitted_through_http() -> None:
    with start_emulator([TOY_CRD]) as emu:
        created = emu.create("gizmos.example.com", gizmo(), admit=True)
        assert created["spec"]["maxSize"] == 10
        with pytest.raises(ApiError, match="owner is immutable"):
            emu.patch("gizmos.example.com", NS, "g", {"spec": {"owner": "eve"}}, admit=True)


# --------------------------------------------------------------------------------------------------
# Built-in kinds
# --------------------------------------------------------------------------------------------------


def job(name: str = "train", **pod: Any) -> JsonDict:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": NS, "labels": {"app": "kubetune"}},
        "spec": {
            "backoffLimit": 2,
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "step", "image": "kubetune/cpu:1"}],
                    **pod,
                }
            },
        },
    }


def test_the_schemas_come_from_kubernetes_validate() -> None:
    assert K8S_VERSION.startswith("1.")
    body = job()
    assert kubernetes_validate.validate(body, K8S_VERSION) == ".".join(K8S_VERSION.split(".")[:2])
    body["spec"]["backoffLimit"] = "two"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(body, K8S_VERSION)  # the package refuses it too...
    with pytest.raises(DecodeError, match="cannot unmarshal string into Go struct field"):
        decode(body, "batch", "v1", "Job")  # ...and the emulator with the server's message


@pytest_asyncio.fixture()
async def api() -> AsyncIterator[aiohttp.ClientSession]:
    with start_emulator() as emulator:
        async with aiohttp.ClientSession(emulator.url) as session:
            session.emulator = emulator  # type: ignore[attr-defined]
            yield session


async def post(
    api: aiohttp.ClientSession, path: str, body: JsonDict, **params: str
) -> tuple[int, JsonDict, list[str]]:
    async with api.post(path, json=body, params=params) as rsp:
        return rsp.status, await rsp.json(), rsp.headers.getall("Warning", [])


JOBS = "/apis/batch/v1/namespaces/default/jobs"


@pytest.mark.asyncio
async def test_builtin_decoding(api: aiohttp.ClientSession) -> None:
    bad = job()
    bad["spec"]["backoffLimit"] = "2"
    status, error, _ = await post(api, JOBS, bad)
    assert status == 400 and error["reason"] == "BadRequest"
    assert error["message"] == (
        'Job in version "v1" cannot be handled as a Job: json: cannot unmarshal string into Go'
        " struct field JobSpec.spec.backoffLimit of type int32"
    )
    typo = job("typo")
    typo["spec"]["template"]["spec"]["containers"][0]["imagePullPolice"] = "Always"
    status, created, warnings = await post(api, JOBS, typo)
    assert status == 201
    assert warnings == [
        '299 - "unknown field \\"spec.template.spec.containers[0].imagePullPolice\\""'
    ]
    assert "imagePullPolice" not in created["spec"]["template"]["spec"]["containers"][0]
    [(request, warning)] = api.emulator.warnings("jobs.batch")  # type: ignore[attr-defined]
    assert request.verb == "create" and "imagePullPolice" in warning
    typo["metadata"]["name"] = "strict"
    status, error, _ = await post(api, JOBS, typo, fieldValidation="Strict")
    assert status == 400
    assert error["message"].endswith(
        'strict decoding error: unknown field "spec.template.spec.containers[0].imagePullPolice"'
    )
    bad_quantity = job("quantity")
    bad_quantity["spec"]["template"]["spec"]["containers"][0]["resources"] = {
        "limits": {"memory": "1 Gi"}
    }
    status, error, _ = await post(api, JOBS, bad_quantity)
    assert status == 400 and "quantities must match the regular expression" in error["message"]


BUILTIN_REFUSALS: dict[str, tuple[str, JsonDict, list[str]]] = {
    "job restartPolicy": (
        JOBS,
        job(restartPolicy="Always"),
        [
            'spec.template.spec.restartPolicy: Unsupported value: "Always": supported values:'
            ' "OnFailure", "Never"'
        ],
    ),
    "job without containers": (
        JOBS,
        job(containers=[]),
        ["spec.template.spec.containers: Required value"],
    ),
    "container name": (
        JOBS,
        job(containers=[{"name": "Step_1", "image": "x"}]),
        [
            'spec.template.spec.containers[0].name: Invalid value: "Step_1": a lowercase RFC 1123'
            " label must consist of"
        ],
    ),
    "container image": (
        JOBS,
        job(containers=[{"name": "step"}]),
        ["spec.template.spec.containers[0].image: Required value"],
    ),
    "volume mount without volume": (
        JOBS,
        job(
            containers=[
                {
                    "name": "s",
                    "image": "x",
                    "volumeMounts": [{"name": "spec", "mountPath": "/etc/s"}],
                }
            ]
        ),
        ['spec.template.spec.containers[0].volumeMounts[0].name: Not found: "spec"'],
    ),
    "env var name": (
        JOBS,
        job(containers=[{"name": "s", "image": "x", "env": [{"name": "1BAD", "value": "1"}]}]),
        [
            'spec.template.spec.containers[0].env[0].name: Invalid value: "1BAD": a valid'
            " environment variable name"
        ],
    ),
    "requests above limits": (
        JOBS,
        job(
            containers=[
                {
                    "name": "s",
                    "image": "x",
                    "resources": {"requests": {"cpu": "2"}, "limits": {"cpu": "1"}},
                }
            ]
        ),
        [
            'spec.template.spec.containers[0].resources.requests[cpu]: Invalid value: "2": must be'
            " less than or equal to cpu limit of 1"
        ],
    ),
    "job name too long for its pod label": (
        JOBS,
        job("j" * 64),
        ["spec.template.metadata.labels: Invalid value:", "must be no more than 63 characters"],
    ),
    "label key": (
        "/api/v1/namespaces/default/configmaps",
        {"metadata": {"name": "cm", "labels": {"-bad": "x"}}, "data": {}},
        [
            'metadata.labels: Invalid value: "-bad": name part must consist of alphanumeric'
            " characters"
        ],
    ),
    "configmap key": (
        "/api/v1/namespaces/default/configmaps",
        {"metadata": {"name": "cm"}, "data": {"spec json": "{}"}},
        [
            'data[spec json]: Invalid value: "spec json": a valid config key must consist of'
            " alphanumeric characters"
        ],
    ),
    "annotation size": (
        "/api/v1/namespaces/default/configmaps",
        {"metadata": {"name": "cm", "annotations": {"a": "x" * 300_000}}},
        ["metadata.annotations: Too long: may not be more than 262144 bytes"],
    ),
    "service name is a DNS-1035 label": (
        "/api/v1/namespaces/default/services",
        {"metadata": {"name": "1svc"}, "spec": {"ports": [{"port": 80}]}},
        [
            'metadata.name: Invalid value: "1svc": a DNS-1035 label must consist of lower case'
            " alphanumeric characters"
        ],
    ),
    "lease": (
        "/apis/coordination.k8s.io/v1/namespaces/default/leases",
        {"metadata": {"name": "l"}, "spec": {"leaseDurationSeconds": 0}},
        ["spec.leaseDurationSeconds: Invalid value: 0: must be greater than 0"],
    ),
    "deployment selector": (
        "/apis/apps/v1/namespaces/default/deployments",
        {
            "metadata": {"name": "d"},
            "spec": {
                "selector": {"matchLabels": {"app": "a"}},
                "template": {
                    "metadata": {"labels": {"app": "b"}},
                    "spec": {"containers": [{"name": "c", "image": "x"}]},
                },
            },
        },
        [
            "spec.template.metadata.labels: Invalid value:",
            "`selector` does not match template `labels`",
        ],
    ),
    "event namespace": (
        "/api/v1/namespaces/default/events",
        {
            "metadata": {"name": "e"},
            "involvedObject": {"kind": "Pod", "name": "p", "namespace": "other"},
            "reason": "R",
        },
        ['involvedObject.namespace: Invalid value: "other": does not match event.namespace'],
    ),
    "namespace": (
        "/api/v1/namespaces/nope/configmaps",
        {"metadata": {"name": "cm"}},
        ['namespaces "nope" not found'],
    ),
}


@pytest.mark.asyncio
@pytest.mark.parametrize("case", sorted(BUILTIN_REFUSALS))
async def test_refused_builtins(api: aiohttp.ClientSession, case: str) -> None:
    path, body, expected = BUILTIN_REFUSALS[case]
    status, error, _ = await post(api, path, copy.deepcopy(body))
    assert status in (404, 422), error
    for text in expected:
        assert text in error["message"], (text, error["message"])
    if status == 422:
        assert error["reason"] == "Invalid" and error["details"]["causes"]
    rejected = api.emulator.rejections()  # type: ignore[attr-defined]
    assert rejected and rejected[-1].code == status


def test_an_operator_like_job_is_admitted_and_defaulted() -> None:
    body = job(
        automountServiceAccountToken=False,
        securityContext={
            "runAsNonRoot": True,
            "runAsUser": 1000,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        volumes=[
            {
                "name": "spec",
                "configMap": {"name": "s", "items": [{"key": "spec.json", "path": "spec.json"}]},
            }
        ],
        tolerations=[{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
    )
    container = body["spec"]["template"]["spec"]["containers"][0]
    container.update(
        volumeMounts=[{"name": "spec", "mountPath": "/etc/kubetune", "readOnly": True}],
        env=[
            {
                "name": "RANK",
                "valueFrom": {
                    "fieldRef": {
                        "fieldPath": (
                            "metadata.annotations['batch.kubernetes.io/job-completion-index']"
                        )
                    }
                },
            }
        ],
        ports=[{"name": "progress", "containerPort": 9400}],
        resources={
            "limits": {"nvidia.com/gpu": "1", "memory": "16Gi"},
            "requests": {"memory": "16Gi"},
        },
    )
    body["spec"]["podFailurePolicy"] = {
        "rules": [
            {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]},
            {
                "action": "FailJob",
                "onExitCodes": {"containerName": "step", "operator": "In", "values": [2]},
            },
        ]
    }
    with start_emulator() as emu:
        created = emu.create("jobs.batch", body, admit=True)
    pod = created["spec"]["template"]["spec"]
    assert pod["dnsPolicy"] == "ClusterFirst" and pod["terminationGracePeriodSeconds"] == 30
    assert pod["containers"][0]["imagePullPolicy"] == "IfNotPresent"
    assert pod["volumes"][0]["configMap"]["defaultMode"] == 420
    rules = created["spec"]["podFailurePolicy"]["rules"]
    assert rules[0]["onPodConditions"][0]["status"] == "True"
    assert created["spec"]["podReplacementPolicy"] == "Failed"
    # the Job's template is immutable once the Job runs
    immutable = "spec.template: Invalid value.*field is immutable"
    change = {"spec": {"template": {"spec": {"activeDeadlineSeconds": 5}}}}
    with start_emulator() as emu:
        emu.create("jobs.batch", body, admit=True)
        with pytest.raises(ApiError, match=immutable):
            emu.patch("jobs.batch", NS, "train", change, admit=True)


def test_validation_can_be_switched_off() -> None:
    with start_emulator(validate_builtins=False, validate_crds=False) as emu:
        emu.create("jobs.batch", job(restartPolicy="Always"), admit=True)
        bad_labels = {"metadata": {"name": "cm", "labels": {"-": "-"}}}
        emu.create("configmaps", bad_labels, namespace=NS, admit=True)
        assert emu.rejections() == []


def test_json_dump_of_field_errors_in_status_causes() -> None:
    with start_emulator() as emu, pytest.raises(ApiError) as caught:
        emu.create("jobs.batch", job(restartPolicy="Always"), admit=True)
    error = caught.value
    causes = error.details["causes"]
    assert causes == [
        {
            "reason": "FieldValueNotSupported",
            "message": 'Unsupported value: "Always": supported values: "OnFailure", "Never"',
            "field": "spec.template.spec.restartPolicy",
        }
    ]
    json.dumps(causes)


def test_validate_function_directly() -> None:
    errors = validate(
        "",
        "v1",
        "services",
        "Service",
        {"metadata": {"name": "svc", "namespace": NS}, "spec": {"ports": [{"port": 0}]}},
    )
    assert [str(e) for e in errors] == [
        "spec.ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive"
    ]
