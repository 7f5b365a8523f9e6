"""
Tests of the kube-apiserver emulator (``tests.emulator``), through HTTP.

Every behaviour a kopf operator depends on is checked with a plain aiohttp
client; the last test runs a tiny kopf operator with ``KopfRunner``.
"""

from __future__ import annotations

import asyncio
import json
import signal
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import kmock
import kopf
import pytest
import pytest_asyncio

from tests.emulator import ApiServer, Emulator, JsonDict, Kubelet, run_kopf, start_emulator

T = TypeVar("T")

WIDGETS = "/apis/kubetune.dev/v1/namespaces/default/widgets"
GADGETS = "/apis/kubetune.dev/v1/namespaces/default/gadgets"
CONFIGMAPS = "/api/v1/namespaces/default/configmaps"
JOBS = "/apis/batch/v1/namespaces/default/jobs"
POD_TEMPLATE = {
    "spec": {
        "restartPolicy": "Never",
        "containers": [{"name": "trainer", "image": "kubetune/trainer:1"}],
    }
}
MERGE = {"Content-Type": "application/merge-patch+json"}
JSONPATCH = {"Content-Type": "application/json-patch+json"}


def make_crd(plural: str, kind: str, *, status: bool = True) -> JsonDict:
    version: JsonDict = {
        "name": "v1",
        "served": True,
        "storage": True,
        "schema": {
            "openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
        },
    }
    if status:
        version["subresources"] = {"status": {}}
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.kubetune.dev"},
        "spec": {
            "group": "kubetune.dev",
            "scope": "Namespaced",
            "names": {
                "plural": plural,
                "singular": kind.lower(),
                "kind": kind,
                "shortNames": [kind.lower()[:2]],
            },
            "versions": [version],
        },
    }


WIDGET_CRD = make_crd("widgets", "Widget")
GADGET_CRD = make_crd("gadgets", "Gadget", status=False)


def validate(new: JsonDict, old: JsonDict | None) -> list[str]:
    """A toy admission webhook: ``spec.size`` must be a positive integer, and immutable."""
    errors: list[str] = []
    size = new.get("spec", {}).get("size")
    if size is not None and (not isinstance(size, int) or size <= 0):
        errors.append(f"spec.size: Invalid value: {json.dumps(size)}: must be positive")
    if old is not None and old.get("spec", {}).get("size") not in (None, size):
        errors.append('spec.size: Invalid value: "changed": field is immutable')
    return errors


@pytest.fixture()
def emu() -> Iterator[Emulator]:
    with start_emulator([WIDGET_CRD, GADGET_CRD], admission=validate) as emulator:
        yield emulator


@pytest_asyncio.fixture()
async def api(emu: Emulator) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(emu.url) as session:
        yield session


async def call(
    api: aiohttp.ClientSession, method: str, path: str, body: Any = None, **kw: Any
) -> tuple[int, Any]:
    """One request; returns the status & the decoded JSON body."""
    async with api.request(method, path, json=body, **kw) as rsp:
        return rsp.status, await rsp.json(content_type=None)


async def read_events(
    rsp: aiohttp.ClientResponse, count: int, timeout: float = 3
) -> list[JsonDict]:
    """Read ``count`` events from a watch stream."""
    events: list[JsonDict] = []
    async with asyncio.timeout(timeout):
        while len(events) < count:
            line = await rsp.content.readline()
            assert line, f"the stream has ended after {events!r}"
            events.append(json.loads(line))
    return events


def summary(events: list[JsonDict]) -> list[tuple[str, str]]:
    return [(e["type"], e["object"]["metadata"].get("name", "")) for e in events]


# --------------------------------------------------------------------------------------------------
# Discovery
# --------------------------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_discovery(api: aiohttp.ClientSession) -> None:
    _, core = await call(api, "GET", "/api")
    assert core["versions"] == ["v1"]
    _, v1 = await call(api, "GET", "/api/v1")
    core_resources = {r["name"]: r for r in v1["resources"]}
    for name in ("pods", "configmaps", "services", "events", "namespaces", "pods/status"):
        assert name in core_resources
    assert core_resources["namespaces"]["namespaced"] is False
    assert core_resources["pods"]["namespaced"] is True
    assert "watch" in core_resources["pods"]["verbs"]

    _, apis = await call(api, "GET", "/apis")
    groups = {g["name"]: g for g in apis["groups"]}
    assert {"batch", "coordination.k8s.io", "events.k8s.io", "kubetune.dev"} <= set(groups)
    assert groups["kubetune.dev"]["preferredVersion"]["version"] == "v1"

    _, batch = await call(api, "GET", "/apis/batch/v1")
    assert {"jobs", "jobs/status"} <= {r["name"] for r in batch["resources"]}

    status, group = await call(api, "GET", "/apis/kubetune.dev/v1")
    assert status == 200
    resources = {r["name"]: r for r in group["resources"]}
    assert resources["widgets"]["kind"] == "Widget"
    assert resources["widgets"]["shortNames"] == ["wi"]
    assert "widgets/status" in resources
    assert "gadgets" in resources and "gadgets/status" not in resources

    status, crds = await call(api, "GET", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions")
    assert status == 200
    assert [c["metadata"]["name"] for c in crds["items"]] == [
        "gadgets.kubetune.dev",
        "widgets.kubetune.dev",
    ]


# --------------------------------------------------------------------------------------------------
# Creation
# --------------------------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_create_assigns_metadata(api: aiohttp.ClientSession) -> None:
    body = {"metadata": {"name": "w1"}, "spec": {"size": 1}, "status": {"phase": "Hacked"}}
    status, w1 = await call(api, "POST", WIDGETS, body)
    assert status == 201
    meta = w1["metadata"]
    assert meta["namespace"] == "default"  # taken from the URL
    assert meta["generation"] == 1
    assert meta["uid"] and meta["creationTimestamp"].endswith("Z")
    assert w1["apiVersion"] == "kubetune.dev/v1" and w1["kind"] == "Widget"
    assert "status" not in w1  # the status subresource ignores .status on create

    status, cm = await call(api, "POST", CONFIGMAPS, {"metadata": {"name": "c1"}, "data": {}})
    assert status == 201
    assert int(cm["metadata"]["resourceVersion"]) > int(meta["resourceVersion"])
    assert cm["metadata"]["uid"] != meta["uid"]

    _, listing = await call(api, "GET", WIDGETS)
    assert int(listing["metadata"]["resourceVersion"]) >= int(cm["metadata"]["resourceVersion"])
    assert [i["metadata"]["name"] for i in listing["items"]] == ["w1"]


@pytest.mark.asyncio
async def test_create_errors_and_generate_name(api: aiohttp.ClientSession) -> None:
    await call(api, "POST", WIDGETS, {"metadata": {"name": "w1"}, "spec": {}})
    status, error = await call(api, "POST", WIDGETS, {"metadata": {"name": "w1"}, "spec": {}})
    assert status == 409
    assert error["kind"] == "Status" and error["reason"] == "AlreadyExists"
    assert error["message"] == 'widgets.kubetune.dev "w1" already exists'
    assert error["details"] == {"name": "w1", "group": "kubetune.dev", "kind": "widgets"}

    mismatch = {"metadata": {"name": "w2", "namespace": "other"}, "spec": {}}
    status, error = await call(api, "POST", WIDGETS, mismatch)
    assert status == 400 and error["reason"] == "BadRequest"

    status, error = await call(api, "POST", WIDGETS, {"metadata": {}, "spec": {}})
    assert status == 422 and error["reason"] == "Invalid"

    names = set()
    for _ in range(3):
        status, obj = await call(api, "POST", WIDGETS, {"metadata": {"generateName": "gen-"}})
        assert status == 201
        names.add(obj["metadata"]["name"])
    assert len(names) == 3 and all(n.startswith("gen-") and len(n) == 9 for n in names)

    status, error = await call(api, "GET", f"{WIDGETS}/absent")
    assert status == 404 and error["reason"] == "NotFound"
    assert error["message"] == 'widgets.kubetune.dev "absent" not found'


# --------------------------------------------------------------------------------------------------
# Updates: conflicts, generations, the status subresource, patch flavours
# --------------------------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_stale_resource_version_conflicts(api: aiohttp.ClientSession) -> None:
    _, w1 = await call(api, "POST", WIDGETS, {"metadata": {"name": "w1"}, "spec": {"a": 1}})
    stale_rv = w1["metadata"]["resourceVersion"]
    status, w1 = await call(api, "PATCH", f"{WIDGETS}/w1", {"spec": {"a": 2}}, headers=MERGE)
    assert status == 200 and w1["metadata"]["resourceVersion"] != stale_rv

    patch = {"metadata": {"resourceVersion": stale_rv}, "spec": {"a": 3}}
    status, error = await call(api, "PATCH", f"{WIDGETS}/w1", patch, headers=MERGE)
    assert status == 409 and error["reason"] == "Conflict"
    assert "the object has been modified" in error["message"]

    stale = {**w1, "metadata": {**w1["metadata"], "resourceVersion": stale_rv}}
    status, error = await call(api, "PUT", f"{WIDGETS}/w1", stale)
    assert status == 409 and error["reason"] == "Conflict"

    fresh = {**w1, "spec": {"a": 4}}
    status, w1 = await call(api, "PUT", f"{WIDGETS}/w1", fresh)
    assert status == 200 and w1["spec"] == {"a": 4}

    # kopf's JSON-patch with a failing "test" op on the resourceVersion -> 422.
    ops = [
        {"op": "test", "path": "/metadata/resourceVersion", "value": stale_rv},
        {"op": "add", "path": "/metadata/finalizers", "value": ["x"]},
    ]
    status, error = await call(api, "PATCH", f"{WIDGETS}/w1", ops, headers=JSONPATCH)
    assert status == 422 and error["kind"] == "Status"


@pytest.mark.asyncio
async def test_generation_bumps_only_on_spec_changes(api: aiohttp.ClientSession) -> None:
    _, w1 = await call(api, "POST", WIDGETS, {"metadata": {"name": "w1"}, "spec": {"a": 1}})
    url = f"{WIDGETS}/w1"

    _, w1 = await call(api, "PATCH", url, {"metadata": {"labels": {"x": "y"}}}, headers=MERGE)
    assert w1["metadata"]["generation"] == 1  # metadata-only
    _, w1 = await call(api, "PATCH", f"{url}/status", {"status": {"p": 1}}, headers=MERGE)
    assert w1["metadata"]["generation"] == 1  # status-only
    _, w1 = await call(api, "PATCH", url, {"spec": {"a": 2}}, headers=MERGE)
    assert w1["metadata"]["generation"] == 2
    _, w1 = await call(api, "PATCH", url, {"other": {"b": 1}}, headers=MERGE)
    assert w1["metadata"]["generation"] == 3  # anything outside metadata/status

    rv = w1["metadata"]["resourceVersion"]
    _, w1 = await call(api, "PATCH", url, {"spec": {"a": 2}}, headers=MERGE)
    assert w1["metadata"]["resourceVersion"] == rv  # a no-op write changes nothing
    assert w1["metadata"]["generation"] == 3


@pytest.mark.asyncio
async def test_status_subresource(api: aiohttp.ClientSession) -> None:
    await call(api, "POST", WIDGETS, {"metadata": {"name": "w1"}, "spec": {"a": 1}})
    url = f"{WIDGETS}/w1"

    # Status writes change only the status (spec & metadata changes are ignored).
    patch = {"status": {"phase": "Ready"}, "spec": {"a": 99}, "metadata": {"labels": {"l": "v"}}}
    status, w1 = await call(api, "PATCH", f"{url}/status", patch, headers=MERGE)
    assert status == 200
    assert w1["status"] == {"phase": "Ready"} and w1["spec"] == {"a": 1}
    assert "labels" not in w1["metadata"]

    # Main-resource writes ignore the status (merge-patch, JSON-patch, PUT).
    patch = {"status": {"phase": "Hacked"}, "spec": {"a": 2}}
    _, w1 = await call(api, "PATCH", url, patch, headers=MERGE)
    assert w1["status"] == {"phase": "Ready"} and w1["spec"] == {"a": 2}
    ops = [{"op": "replace", "path": "/status/phase", "value": "X"}]
    _, w1 = await call(api, "PATCH", url, ops, headers=JSONPATCH)
    assert w1["status"] == {"phase": "Ready"}
    _, w1 = await call(api, "PUT", url, {**w1, "status": {}, "spec": {"a": 3}})
    assert w1["status"] == {"phase": "Ready"} and w1["spec"] == {"a": 3}

    # PUT to /status replaces the status.
    _, w1 = await call(api, "PUT", f"{url}/status", {**w1, "status": {"phase": "Done"}})
    assert w1["status"] == {"phase": "Done"} and w1["spec"] == {"a": 3}
    _, w1 = await call(api, "GET", f"{url}/status")
    assert w1["status"] == {"phase": "Done"}

    # Without the status subresource, the status is a regular field & /status is absent.
    await call(api, "POST", GADGETS, {"metadata": {"name": "g1"}, "status": {"s": 1}})
    status, g1 = await call(api, "PATCH", f"{GADGETS}/g1", {"status": {"s": 2}}, headers=MERGE)
    assert g1["status"] == {"s": 2}
    status, _ = await call(api, "PATCH", f"{GADGETS}/g1/status", {"status": {}}, headers=MERGE)
    assert status == 404


# --------------------------------------------------------------------------------------------------
# Selectors & watching
# --------------------------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_label_and_field_selectors(emu: Emulator, api: aiohttp.ClientSession) -> None:
    labels = {
        "m1": {"a": "b", "e": "x", "g": "1"},
        "m2": {"a": "b", "e": "y", "g": "1", "c": "other"},
        "n1": {"a": "b", "e": "x", "g": "1", "c": "d"},  # c=d
        "n2": {"a": "b", "e": "z", "g": "1"},  # e not in (x,y)
        "n3": {"a": "b", "e": "x", "g": "1", "f": ""},  # f exists
        "n4": {"a": "b", "e": "x"},  # no g
        "n5": {"a": "c", "e": "x", "g": "1"},  # a!=b
    }
    for name, labelset in labels.items():
        await call(api, "POST", CONFIGMAPS, {"metadata": {"name": name, "labels": labelset}})
    emu.create("configmaps", {"metadata": {"name": "m1", "labels": labels["m1"]}}, namespace="ns2")

    selector = "a=b,c!=d,e in (x,y),!f,g"
    _, found = await call(api, "GET", CONFIGMAPS, params={"labelSelector": selector})
    assert [i["metadata"]["name"] for i in found["items"]] == ["m1", "m2"]
    _, found = await call(api, "GET", "/api/v1/configmaps", params={"labelSelector": selector})
    assert [(i["metadata"]["namespace"], i["metadata"]["name"]) for i in found["items"]] == [
        ("default", "m1"),
        ("default", "m2"),
        ("ns2", "m1"),
    ]
    _, found = await call(api, "GET", CONFIGMAPS, params={"labelSelector": "e notin (x,y)"})
    assert [i["metadata"]["name"] for i in found["items"]] == ["n2"]

    params = {"fieldSelector": "metadata.name=m1"}
    _, found = await call(api, "GET", "/api/v1/configmaps", params=params)
    assert [i["metadata"]["namespace"] for i in found["items"]] == ["default", "ns2"]
    params = {"fieldSelector": "metadata.name=m1,metadata.namespace!=default"}
    _, found = await call(api, "GET", "/api/v1/configmaps", params=params)
    assert [i["metadata"]["namespace"] for i in found["items"]] == ["ns2"]

    status, error = await call(api, "GET", CONFIGMAPS, params={"labelSelector": "a in (x"})
    assert status == 400 and error["reason"] == "BadRequest"

    # Pagination as kopf uses it (limit & continue).
    _, page1 = await call(api, "GET", CONFIGMAPS, params={"limit": "4"})
    token = page1["metadata"]["continue"]
    _, page2 = await call(api, "GET", CONFIGMAPS, params={"limit": "4", "continue": token})
    assert len(page1["items"]) == 4 and len(page2["items"]) == 3
    assert page2["metadata"]["continue"] == ""


@pytest.mark.asyncio
async def test_watch_resource_versions_and_selectors(api: aiohttp.ClientSession) -> None:
    await call(api, "POST", WIDGETS, {"metadata": {"name": "old", "labels": {"app": "x"}}})
    _, listing = await call(api, "GET", WIDGETS)
    list_rv = listing["metadata"]["resourceVersion"]

    # Changes after the listing, before the watch starts: replayed from the history.
    await call(api, "POST", WIDGETS, {"metadata": {"name": "w1", "labels": {"app": "x"}}})
    await call(api, "POST", WIDGETS, {"metadata": {"name": "w2", "labels": {"app": "y"}}})

    params = {"watch": "true", "resourceVersion": list_rv, "labelSelector": "app=x"}
    async with api.get(WIDGETS, params=params) as rsp:
        assert rsp.status == 200
        events = await read_events(rsp, 1)
        assert summary(events) == [("ADDED", "w1")]

        # Live events, including objects entering & leaving the selector.
        relabel = {"metadata": {"labels": {"app": "y"}}}
        await call(api, "PATCH", f"{WIDGETS}/w1", relabel, headers=MERGE)
        relabel = {"metadata": {"labels": {"app": "x"}}}
        await call(api, "PATCH", f"{WIDGETS}/w2", relabel, headers=MERGE)
        await call(api, "PATCH", f"{WIDGETS}/w2/status", {"status": {"s": 1}}, headers=MERGE)
        await call(api, "DELETE", f"{WIDGETS}/old")
        events = await read_events(rsp, 4)
        assert summary(events) == [
            ("DELETED", "w1"),
            ("ADDED", "w2"),
            ("MODIFIED", "w2"),
            ("DELETED", "old"),
        ]
        rvs = [int(e["object"]["metadata"]["resourceVersion"]) for e in events]
        assert rvs == sorted(rvs) and rvs[0] > int(list_rv)

    # Without a resourceVersion: the current state as ADDED events.
    async with api.get(WIDGETS, params={"watch": "true"}) as rsp:
        assert summary(await read_events(rsp, 2)) == [("ADDED", "w1"), ("ADDED", "w2")]

    # The initial-streaming mode: ADDED events, then a bookmark.
    params = {"watch": "true", "sendInitialEvents": "true", "allowWatchBookmarks": "true"}
    async with api.get(WIDGETS, params=params) as rsp:
        events = await read_events(rsp, 3)
        assert [e["type"] for e in events] == ["ADDED", "ADDED", "BOOKMARK"]
        annotations = events[-1]["object"]["metadata"]["annotations"]
        assert annotations == {"k8s.io/initial-events-end": "true"}

    # A server-side timeout ends the stream normally.
    params = {"watch": "true", "resourceVersion": "999999", "timeoutSeconds": "0.2"}
    async with api.get(WIDGETS, params=params) as rsp:
        assert await rsp.content.read() == b""


# --------------------------------------------------------------------------------------------------
# Deletion: finalizers & garbage collection
# --------------------------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_finalizers(emu: Emulator, api: aiohttp.ClientSession) -> None:
    body = {"metadata": {"name": "w1", "finalizers": ["kopf.zalando.org/KopfFinalizerMarker"]}}
    await call(api, "POST", WIDGETS, body)
    async with api.get(WIDGETS, params={"watch": "true"}) as rsp:
        await read_events(rsp, 1)

        status, w1 = await call(api, "DELETE", f"{WIDGETS}/w1")
        assert status == 202
        assert w1["metadata"]["deletionTimestamp"]
        assert emu.get("widgets", "default", "w1") is not None

        # Deleting again changes nothing; adding finalizers is forbidden.
        status, _ = await call(api, "DELETE", f"{WIDGETS}/w1")
        assert status == 202
        patch = {"metadata": {"finalizers": ["a", "kopf.zalando.org/KopfFinalizerMarker"]}}
        status, error = await call(api, "PATCH", f"{WIDGETS}/w1", patch, headers=MERGE)
        assert status == 422 and "no new finalizers" in error["message"]

        # Other changes are fine; removing the last finalizer removes the object.
        patch = {"metadata": {"annotations": {"k": "v"}}}
        status, _ = await call(api, "PATCH", f"{WIDGETS}/w1", patch, headers=MERGE)
        assert status == 200
        patch = {"metadata": {"finalizers": None}}
        status, w1 = await call(api, "PATCH", f"{WIDGETS}/w1", patch, headers=MERGE)
        assert status == 200
        assert emu.get("widgets", "default", "w1") is None

        events = await read_events(rsp, 3)
        assert summary(events) == [("MODIFIED", "w1"), ("MODIFIED", "w1"), ("DELETED", "w1")]


@pytest.mark.asyncio
async def test_owner_reference_cascade(emu: Emulator, api: aiohttp.ClientSession) -> None:
    _, owner = await call(api, "POST", WIDGETS, {"metadata": {"name": "owner"}})

    def owned_by(obj: JsonDict) -> JsonDict:
        meta = obj["metadata"]
        ref = {"apiVersion": obj["apiVersion"], "kind": obj["kind"], "name": meta["name"]}
        return {"ownerReferences": [ref | {"uid": meta["uid"], "controller": True}]}

    child_body = {
        "metadata": {"name": "child", **owned_by(owner)},
        "spec": {"template": POD_TEMPLATE},
    }
    _, child = await call(api, "POST", JOBS, child_body)
    grandchild = {"metadata": {"name": "grandchild", **owned_by(child)}}
    await call(api, "POST", CONFIGMAPS, grandchild)
    held = {"metadata": {"name": "held", "finalizers": ["x"], **owned_by(owner)}}
    await call(api, "POST", CONFIGMAPS, held)
    await call(api, "POST", CONFIGMAPS, {"metadata": {"name": "unrelated"}})

    status, _ = await call(api, "DELETE", f"{WIDGETS}/owner")
    assert status == 200
    assert emu.get("widgets", "default", "owner") is None
    assert emu.get("jobs", "default", "child") is None
    assert emu.get("configmaps", "default", "grandchild") is None
    assert emu.get("configmaps", "default", "unrelated") is not None
    held_now = emu.get("configmaps", "default", "held")
    assert held_now is not None and held_now["metadata"]["deletionTimestamp"]

    # Orphaning keeps the dependents.
    _, owner = await call(api, "POST", WIDGETS, {"metadata": {"name": "owner2"}})
    await call(api, "POST", CONFIGMAPS, {"metadata": {"name": "orphan", **owned_by(owner)}})
    params = {"propagationPolicy": "Orphan"}
    status, _ = await call(api, "DELETE", f"{WIDGETS}/owner2", params=params)
    assert status == 200
    assert emu.get("configmaps", "default", "orphan") is not None


# --------------------------------------------------------------------------------------------------
# Admission
# --------------------------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_admission(emu: Emulator, api: aiohttp.ClientSession) -> None:
    body = {"metadata": {"name": "bad"}, "spec": {"size": -1}}
    status, error = await call(api, "POST", WIDGETS, body)
    assert status == 422
    assert error["kind"] == "Status" and error["reason"] == "Invalid"
    assert error["message"] == (
        'Widget.kubetune.dev "bad" is invalid: spec.size: Invalid value: -1: must be positive'
    )
    assert error["details"]["causes"] == [
        {
            "reason": "FieldValueInvalid",
            "message": "Invalid value: -1: must be positive",
            "field": "spec.size",
        }
    ]
    assert emu.get("widgets", "default", "bad") is None  # nothing stored

    status, w1 = await call(api, "POST", WIDGETS, {"metadata": {"name": "w1"}, "spec": {"size": 1}})
    assert status == 201
    rv = w1["metadata"]["resourceVersion"]
    status, error = await call(api, "PATCH", f"{WIDGETS}/w1", {"spec": {"size": 0}}, headers=MERGE)
    assert status == 422
    assert error["message"].startswith('Widget.kubetune.dev "w1" is invalid: [spec.size: ')
    assert len(error["details"]["causes"]) == 2  # both errors, joined in brackets
    stored = emu.get("widgets", "default", "w1")
    assert stored is not None and stored["metadata"]["resourceVersion"] == rv

    # Other groups are not validated.
    status, _ = await call(
        api, "POST", CONFIGMAPS, {"metadata": {"name": "c"}, "spec": {"size": -1}}
    )
    assert status == 201


# --------------------------------------------------------------------------------------------------
# Fault injection
# --------------------------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_fault_injection(emu: Emulator, api: aiohttp.ClientSession) -> None:
    await call(api, "POST", WIDGETS, {"metadata": {"name": "w1"}})
    url = f"{WIDGETS}/w1"

    emu.faults.conflict("PATCH", "widgets")
    emu.faults.invalid("patch", "widgets", subresource="status")
    emu.faults.server_error("GET", "widgets", count=2)
    throttle = emu.faults.throttle("POST", "configmaps", retry_after=3)

    status, error = await call(api, "PATCH", url, {"spec": {}}, headers=MERGE)
    assert status == 409 and error["reason"] == "Conflict"
    status, _ = await call(api, "PATCH", url, {"spec": {"x": 1}}, headers=MERGE)
    assert status == 200  # only the next one
    status, error = await call(api, "PATCH", f"{url}/status", {"status": {}}, headers=MERGE)
    assert status == 422 and error["reason"] == "Invalid"
    assert [(await call(api, "GET", url))[0] for _ in range(3)] == [500, 500, 200]

    async with api.post(CONFIGMAPS, json={"metadata": {"name": "c"}}) as rsp:
        assert rsp.status == 429 and rsp.headers["Retry-After"] == "3"
        assert (await rsp.json())["reason"] == "TooManyRequests"
    assert throttle.hits == 1 and throttle.remaining == 0
    assert emu.get("configmaps", "default", "c") is None  # nothing happened
    assert [r.verb for r in emu.requests("PATCH", "widgets")] == ["patch"] * 3


@pytest.mark.asyncio
async def test_dropping_watches(emu: Emulator, api: aiohttp.ClientSession) -> None:
    await call(api, "POST", WIDGETS, {"metadata": {"name": "w1"}})

    async with api.get(WIDGETS, params={"watch": "true"}) as rsp:
        await read_events(rsp, 1)
        assert emu.faults.drop_watches("widgets") == 1
        assert await rsp.content.read() == b""  # ended gracefully

    async with api.get(WIDGETS, params={"watch": "true"}) as rsp:
        await read_events(rsp, 1)
        assert emu.faults.drop_watches(abrupt=True) == 1
        with pytest.raises(aiohttp.ClientPayloadError):
            await rsp.content.read()

    # Expired resource versions: 410 Gone as a watch event (kopf re-lists then).
    _, listing = await call(api, "GET", WIDGETS)
    emu.faults.expire_resource_versions()
    params = {"watch": "true", "resourceVersion": listing["metadata"]["resourceVersion"]}
    async with api.get(WIDGETS, params=params) as rsp:
        [event] = await read_events(rsp, 1)
        assert event["type"] == "ERROR" and event["object"]["code"] == 410
        assert await rsp.content.read() == b""


# --------------------------------------------------------------------------------------------------
# The test kubelet
# --------------------------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_kubelet_job_lifecycle(emu: Emulator, api: aiohttp.ClientSession) -> None:
    kubelet = Kubelet(emu)
    for name in ("ok", "oom", "pull", "unsched", "late"):
        body = {"metadata": {"name": name}, "spec": {"template": POD_TEMPLATE}}
        status, job = await call(api, "POST", JOBS, body)
        assert status == 201
    labels = job["spec"]["template"]["metadata"]["labels"]
    assert labels["batch.kubernetes.io/job-name"] == "late"  # defaulted by the "API server"

    _, listing = await call(api, "GET", JOBS)
    params = {"watch": "true", "resourceVersion": listing["metadata"]["resourceVersion"]}
    async with api.get(JOBS, params=params) as rsp:
        kubelet.start("default", "ok")
        events = await read_events(rsp, 2)  # active=1, then ready=1
        assert events[-1]["object"]["status"]["active"] == 1
        assert events[-1]["object"]["status"]["startTime"]

    [pod] = emu.objects("pods", "default", labels="job-name=ok")
    assert pod["status"]["phase"] == "Running"
    assert pod["metadata"]["labels"]["batch.kubernetes.io/job-name"] == "ok"
    [ref] = pod["metadata"]["ownerReferences"]
    assert ref["kind"] == "Job" and ref["controller"] is True and ref["name"] == "ok"

    job = kubelet.succeed("default", "ok", {"accuracy": 0.93})
    assert job["status"]["succeeded"] == 1 and job["status"]["completionTime"]
    assert [c["type"] for c in job["status"]["conditions"]] == ["SuccessCriteriaMet", "Complete"]
    _, pod = await call(api, "GET", f"/api/v1/namespaces/default/pods/{pod['metadata']['name']}")
    terminated = pod["status"]["containerStatuses"][0]["state"]["terminated"]
    assert terminated["exitCode"] == 0 and terminated["reason"] == "Completed"
    assert json.loads(terminated["message"]) == {"accuracy": 0.93}

    job = kubelet.fail("default", "oom", "OOMKilled")
    [pod] = kubelet.pods("default", "oom")
    terminated = pod["status"]["containerStatuses"][0]["state"]["terminated"]
    assert (terminated["exitCode"], terminated["reason"]) == (137, "OOMKilled")
    assert [(c["type"], c["reason"]) for c in job["status"]["conditions"]] == [
        ("FailureTarget", "BackoffLimitExceeded"),
        ("Failed", "BackoffLimitExceeded"),
    ]

    job = kubelet.fail("default", "pull", "ImagePullBackOff")
    [pod] = kubelet.pods("default", "pull")
    waiting = pod["status"]["containerStatuses"][0]["state"]["waiting"]
    assert waiting["reason"] == "ImagePullBackOff" and "kubetune/trainer:1" in waiting["message"]
    assert job["status"]["active"] == 1 and "conditions" not in job["status"]

    kubelet.fail("default", "unsched", "Unschedulable")
    [pod] = kubelet.pods("default", "unsched")
    [scheduled] = pod["status"]["conditions"]
    assert (scheduled["type"], scheduled["status"]) == ("PodScheduled", "False")
    assert scheduled["reason"] == "Unschedulable"

    kubelet.start("default", "late")
    job = kubelet.fail("default", "late", "DeadlineExceeded")
    assert [c["reason"] for c in job["status"]["conditions"]] == ["DeadlineExceeded"] * 2
    assert "active" not in job["status"] and job["status"]["failed"] == 1
    assert kubelet.pods("default", "late")[0]["status"]["phase"] == "Failed"

    # Deleting a Job garbage-collects its Pods.
    await call(api, "DELETE", f"{JOBS}/ok")
    assert kubelet.pods("default", "ok") == []


@pytest.mark.asyncio
async def test_in_loop_usage_with_kmock_dsl() -> None:
    """ApiServer is a kmock handler: usable in the test's own loop, with kmock's DSL."""
    async with ApiServer(crds=[WIDGET_CRD]) as server, kmock.Server(server) as http:
        server["get /healthz"] << b"ok"  # kmock's DSL still serves non-resource endpoints
        async with http.client.get("/healthz") as rsp:
            assert await rsp.read() == b"ok"
        async with http.client.post(WIDGETS, json={"metadata": {"name": "w1"}}) as rsp:
            assert rsp.status == 201
        spec = server.registry.resolve("widgets")
        assert server.get_object(spec, "default", "w1")["metadata"]["generation"] == 1
        assert [r.verb for r in server.request_log] == ["create"]


# --------------------------------------------------------------------------------------------------
# A real kopf operator against the emulator
# --------------------------------------------------------------------------------------------------


def make_widget_operator(emu: Emulator, deleted: list[str]) -> kopf.OperatorRegistry:
    """A toy operator: each Widget gets an adopted ConfigMap and a status; deletions are noted."""
    registry = kopf.OperatorRegistry()

    @kopf.on.create("kubetune.dev", "v1", "widgets", id="create_widget", registry=registry)
    async def create_widget(
        body: kopf.Body, spec: kopf.Spec, name: str, namespace: str, patch: kopf.Patch, **_: Any
    ) -> dict[str, str]:
        child = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": f"{name}-config"},
            "data": {"size": str(spec.get("size"))},
        }
        kopf.adopt(child, owner=body)
        async with aiohttp.ClientSession(emu.url) as session:
            url = f"/api/v1/namespaces/{namespace}/configmaps"
            async with session.post(url, json=child) as rsp:
                rsp.raise_for_status()
        kopf.info(body, reason="Configured", message=f"Created {child['metadata']['name']}")
        patch.status["phase"] = "Ready"
        return {"configmap": child["metadata"]["name"]}

    @kopf.on.delete("kubetune.dev", "v1", "widgets", id="delete_widget", registry=registry)
    def delete_widget(name: str, **_: Any) -> None:
        deleted.append(name)

    return registry


def wait_until(fn: Callable[[], T], timeout: float = 5.0) -> T:
    deadline = time.monotonic() + timeout
    while not (result := fn()):
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)
    return result


def test_kopf_operator_with_kopf_runner(emu: Emulator) -> None:
    deleted: list[str] = []
    registry = make_widget_operator(emu, deleted)
    with run_kopf(emu, registry) as runner:
        body = {"metadata": {"name": "w1"}, "spec": {"size": 3}}
        emu.create("widgets", body, namespace="default")
        widget = emu.wait_for("widgets", "default", "w1", {"status": {"phase": "Ready"}})
        assert widget["status"]["create_widget"] == {"configmap": "w1-config"}
        assert widget["metadata"]["generation"] == 1  # status & annotations only
        assert widget["metadata"]["finalizers"] == ["kopf.zalando.org/KopfFinalizerMarker"]

        child = emu.get("configmaps", "default", "w1-config")
        assert child is not None and child["data"] == {"size": "3"}
        [ref] = child["metadata"]["ownerReferences"]
        assert ref["uid"] == widget["metadata"]["uid"] and ref["controller"] is True

        # kopf reports the handling as a k8s Event (through the core v1 API).
        event = wait_until(lambda: emu.objects("events", "default"))[0]
        assert event["involvedObject"]["uid"] == widget["metadata"]["uid"]
        assert event["reason"] == "Configured"

        # The deletion waits for kopf's finalizer, then cascades to the child.
        emu.delete("widgets", "default", "w1")
        emu.wait_for_absence("widgets", "default", "w1")
        assert deleted == ["w1"]
        assert emu.get("configmaps", "default", "w1-config") is None

    assert runner.exit_code == 0
    assert runner.exception is None
    assert "Handler 'create_widget' succeeded." in runner.output
    assert emu.server.server_errors == []


# --------------------------------------------------------------------------------------------------
# Strategic merge patch, server-side apply, Tables, field selectors, dry runs
# --------------------------------------------------------------------------------------------------

DEPLOYMENTS = "/apis/apps/v1/namespaces/default/deployments"
SMP = {"Content-Type": "application/strategic-merge-patch+json"}
APPLY = {"Content-Type": "application/apply-patch+yaml"}


def deployment(*containers: JsonDict) -> JsonDict:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": list(containers)},
            },
        },
    }


@pytest.mark.asyncio
async def test_strategic_merge_patch(api: aiohttp.ClientSession) -> None:
    body = deployment(
        {"name": "app", "image": "app:1", "env": [{"name": "A", "value": "1"}]},
        {"name": "sidecar", "image": "proxy:1"},
    )
    assert (await call(api, "POST", DEPLOYMENTS, body))[0] == 201
    patch = {
        "spec": {
            "template": {
                "spec": {
                    "$setElementOrder/containers": [{"name": "sidecar"}, {"name": "app"}],
                    "containers": [
                        {"name": "app", "env": [{"name": "B", "value": "2"}]},
                        {"name": "sidecar", "image": "proxy:2"},
                    ],
                }
            }
        }
    }
    status, patched = await call(api, "PATCH", f"{DEPLOYMENTS}/web", patch, headers=SMP)
    assert status == 200, patched
    sidecar, app = patched["spec"]["template"]["spec"]["containers"]
    assert (sidecar["name"], sidecar["image"]) == ("sidecar", "proxy:2")
    assert app["image"] == "app:1"  # merged by name, not replaced
    assert app["env"] == [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]
    delete = {
        "spec": {"template": {"spec": {"containers": [{"name": "sidecar", "$patch": "delete"}]}}}
    }
    _, patched = await call(api, "PATCH", f"{DEPLOYMENTS}/web", delete, headers=SMP)
    assert [c["name"] for c in patched["spec"]["template"]["spec"]["containers"]] == ["app"]
    # custom resources have no strategic merge patch
    await call(api, "POST", WIDGETS, {"metadata": {"name": "w1"}, "spec": {"size": 1}})
    status, error = await call(api, "PATCH", f"{WIDGETS}/w1", {"spec": {}}, headers=SMP)
    assert status == 415 and error["reason"] == "UnsupportedMediaType"


@pytest.mark.asyncio
async def test_server_side_apply(api: aiohttp.ClientSession) -> None:
    applied = deployment({"name": "app", "image": "app:1", "ports": [{"containerPort": 80}]})
    applied["metadata"]["labels"] = {"tier": "web"}
    url = f"{DEPLOYMENTS}/web"
    async with api.patch(url, data=json.dumps(applied), headers=APPLY) as rsp:
        assert rsp.status == 400  # a field manager is required
    params = {"fieldManager": "test"}
    async with api.patch(url, data=json.dumps(applied), headers=APPLY, params=params) as rsp:
        assert rsp.status == 201
    applied["metadata"].pop("labels")
    applied["spec"]["template"]["spec"]["containers"][0]["image"] = "app:2"
    async with api.patch(url, data=json.dumps(applied), headers=APPLY, params=params) as rsp:
        assert rsp.status == 200
        obj = await rsp.json()
    assert "labels" not in obj["metadata"]  # no longer applied by the manager: removed
    [container] = obj["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "app:2"
    assert container["ports"] == [{"containerPort": 80, "protocol": "TCP"}]  # keyed, defaulted


@pytest.mark.asyncio
async def test_tables_field_selectors_and_dry_runs(api: aiohttp.ClientSession) -> None:
    await call(api, "POST", WIDGETS, {"metadata": {"name": "w1"}, "spec": {"size": 1}})
    table_type = {"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"}
    status, table = await call(api, "GET", WIDGETS, headers=table_type)
    assert status == 200 and table["kind"] == "Table"
    assert [c["name"] for c in table["columnDefinitions"]] == ["Name", "Age"]
    [row] = table["rows"]
    assert row["cells"][0] == "w1" and row["cells"][1].endswith("s")
    assert row["object"]["kind"] == "PartialObjectMetadata"
    status, table = await call(api, "GET", f"{WIDGETS}/w1", headers=table_type)
    assert status == 200 and table["rows"][0]["cells"][0] == "w1"

    status, error = await call(api, "GET", WIDGETS, params={"fieldSelector": "spec.size=1"})
    assert status == 400 and error["message"] == "field label not supported: spec.size"
    events = "/api/v1/namespaces/default/events"
    status, _ = await call(api, "GET", events, params={"fieldSelector": "involvedObject.name=w1"})
    assert status == 200

    body = {"metadata": {"name": "dry"}, "data": {"a": "1"}}
    status, created = await call(api, "POST", CONFIGMAPS, body, params={"dryRun": "All"})
    assert status == 201 and created["metadata"]["name"] == "dry"
    status, _ = await call(api, "GET", f"{CONFIGMAPS}/dry")
    assert status == 404


# --------------------------------------------------------------------------------------------------
# TLS, token authentication, kubeconfig, the standalone process
# --------------------------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_tls_and_bearer_token(tmp_path: Path) -> None:
    with start_emulator(tls=True, token="t0ken") as emu:
        assert emu.url.startswith("https://127.0.0.1:") and emu.ca_file is not None
        context = ssl.create_default_context(cafile=str(emu.ca_file))
        connector = aiohttp.TCPConnector(ssl=context)
        async with aiohttp.ClientSession(emu.url, connector=connector) as client:
            async with client.get("/api/v1/namespaces") as rsp:
                assert rsp.status == 401
                assert await rsp.json() == {
                    "kind": "Status",
                    "apiVersion": "v1",
                    "metadata": {},
                    "status": "Failure",
                    "message": "Unauthorized",
                    "reason": "Unauthorized",
                    "code": 401,
                }
            headers = {"Authorization": "Bearer wrong"}
            async with client.get("/version", headers=headers) as rsp:
                assert rsp.status == 401
            async with client.get("/healthz") as rsp:  # probes need no token
                assert rsp.status == 200
            headers = {"Authorization": "Bearer t0ken"}
            async with client.get("/api/v1/namespaces", headers=headers) as rsp:
                assert rsp.status == 200
        # a plain-HTTP client or one without the CA cannot talk to it
        async with aiohttp.ClientSession() as client:
            with pytest.raises(aiohttp.ClientConnectorCertificateError):
                await client.get(f"{emu.url}/healthz")

        config = json.loads(emu.write_kubeconfig(tmp_path / "kubeconfig").read_text())
        assert config["clusters"][0]["cluster"] == {
            "server": emu.url,
            "certificate-authority": str(emu.ca_file),
        }
        assert config["users"][0]["user"] == {"token": "t0ken"}
        info = emu.connection_info()
        assert (info.ca_path, info.token, info.insecure) == (str(emu.ca_file), "t0ken", False)

        import kubernetes

        client_config = kubernetes.client.Configuration()
        kubernetes.config.load_kube_config(
            str(tmp_path / "kubeconfig"), client_configuration=client_config
        )
        with kubernetes.client.ApiClient(client_config) as api_client:
            names = kubernetes.client.CoreV1Api(api_client).list_namespace()
            assert [ns.metadata.name for ns in names.items] == ["default", "kube-system"]


def test_the_emulator_as_a_standalone_process(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parents[2]
    (tmp_path / "token").write_text("s3cret\n")
    url_file, ca_file = tmp_path / "url", tmp_path / "ca.crt"
    command = [
        sys.executable,
        "-m",
        "tests.emulator",
        "serve",
        "--crds",
        str(root / "crds"),
        "--url-file",
        str(url_file),
        "--tls",
        "--token-file",
        str(tmp_path / "token"),
        "--ca-out",
        str(ca_file),
    ]
    process = subprocess.Popen(
        command, cwd=root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        deadline = time.monotonic() + 60
        while not url_file.exists():
            assert process.poll() is None, process.communicate()[0]
            assert time.monotonic() < deadline, "the emulator did not start"
            time.sleep(0.05)
        url = url_file.read_text().strip()
        context = ssl.create_default_context(cafile=str(ca_file))
        request = urllib.request.Request(
            f"{url}/apis/kubetune.dev/v1alpha1/namespaces/default/finetunejobs",
            headers={"Authorization": "Bearer s3cret"},
        )
        with urllib.request.urlopen(request, context=context, timeout=10) as rsp:
            assert json.load(rsp)["kind"] == "FinetuneJobList"
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=30)
    assert process.returncode == 0, output
    assert "serving on https://127.0.0.1:" in output
