"""
Decoding of Kubernetes' protobuf request bodies (``application/vnd.kubernetes.protobuf``)
for the few kinds that kubectl's typed commands send that way: ``kubectl create namespace``,
``kubectl create configmap``, ``kubectl create secret generic``, ``kubectl create
serviceaccount``. The emulator answers in JSON (kubectl accepts it); a protobuf body of
another kind is answered 415 Unsupported Media Type.

The wire format is the ``k8s\\x00`` magic plus a ``runtime.Unknown`` envelope around the
object's message, whose field numbers come from ``k8s.io/api/core/v1/generated.proto``.
"""

from __future__ import annotations

import base64
import datetime
from typing import Any

PROTOBUF = "application/vnd.kubernetes.protobuf"
MAGIC = b"k8s\x00"

# message name -> {field number: (json name, type)}; types: string, bytes, int, bool, time,
# msg:<Name>, rep:<type>, map:string, map:bytes
_MESSAGES: dict[str, dict[int, tuple[str, str]]] = {
    "Unknown": {
        1: ("typeMeta", "msg:TypeMeta"),
        2: ("raw", "bytes"),
        3: ("contentEncoding", "string"),
        4: ("contentType", "string"),
    },
    "TypeMeta": {1: ("apiVersion", "string"), 2: ("kind", "string")},
    "ObjectMeta": {
        1: ("name", "string"),
        2: ("generateName", "string"),
        3: ("namespace", "string"),
        5: ("uid", "string"),
        6: ("resourceVersion", "string"),
        7: ("generation", "int"),
        8: ("creationTimestamp", "time"),
        11: ("labels", "map:string"),
        12: ("annotations", "map:string"),
        13: ("ownerReferences", "rep:msg:OwnerReference"),
        14: ("finalizers", "rep:string"),
    },
    "OwnerReference": {
        1: ("kind", "string"),
        3: ("name", "string"),
        4: ("uid", "string"),
        5: ("apiVersion", "string"),
        6: ("controller", "bool"),
        7: ("blockOwnerDeletion", "bool"),
    },
    "Time": {1: ("seconds", "int"), 2: ("nanos", "int")},
    "Namespace": {1: ("metadata", "msg:ObjectMeta"), 2: ("spec", "msg:NamespaceSpec")},
    "NamespaceSpec": {1: ("finalizers", "rep:string")},
    "ConfigMap": {
        1: ("metadata", "msg:ObjectMeta"),
        2: ("data", "map:string"),
        3: ("binaryData", "map:bytes"),
        4: ("immutable", "bool"),
    },
    "Secret": {
        1: ("metadata", "msg:ObjectMeta"),
        2: ("data", "map:bytes"),
        3: ("type", "string"),
        4: ("stringData", "map:string"),
        5: ("immutable", "bool"),
    },
    "ServiceAccount": {
        1: ("metadata", "msg:ObjectMeta"),
        3: ("imagePullSecrets", "rep:msg:LocalObjectReference"),
        4: ("automountServiceAccountToken", "bool"),
    },
    "LocalObjectReference": {1: ("name", "string")},
}
KINDS = ("Namespace", "ConfigMap", "Secret", "ServiceAccount")


class ProtobufError(ValueError):
    pass


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data):
            raise ProtobufError("truncated varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def _fields(data: bytes) -> list[tuple[int, int | bytes]]:
    fields: list[tuple[int, int | bytes]] = []
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(data, pos)
            fields.append((number, value))
        elif wire == 2:
            length, pos = _varint(data, pos)
            fields.append((number, data[pos : pos + length]))
            pos += length
        elif wire == 1:
            pos += 8
        elif wire == 5:
            pos += 4
        else:
            raise ProtobufError(f"unsupported wire type {wire}")
    return fields


def _scalar(kind: str, value: int | bytes) -> Any:
    if kind == "string":
        return bytes(value).decode() if isinstance(value, bytes) else str(value)
    if kind == "bytes":
        return base64.b64encode(bytes(value)).decode() if isinstance(value, bytes) else ""
    if kind == "int":
        return int(value) if isinstance(value, int) else 0
    if kind == "bool":
        return bool(value)
    if kind == "time":
        parsed = decode_message("Time", bytes(value)) if isinstance(value, bytes) else {}
        moment = datetime.datetime.fromtimestamp(parsed.get("seconds", 0), tz=datetime.UTC)
        return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
    if kind.startswith("msg:"):
        return decode_message(kind[4:], bytes(value) if isinstance(value, bytes) else b"")
    raise ProtobufError(f"unsupported type {kind}")


def decode_message(name: str, data: bytes) -> dict[str, Any]:
    spec = _MESSAGES[name]
    out: dict[str, Any] = {}
    for number, value in _fields(data):
        if number not in spec:
            continue
        key, kind = spec[number]
        if kind.startswith("map:"):
            entry = dict(_fields(bytes(value) if isinstance(value, bytes) else b""))
            map_key = _scalar("string", entry.get(1, b""))
            out.setdefault(key, {})[map_key] = _scalar(kind[4:], entry.get(2, b""))
        elif kind.startswith("rep:"):
            out.setdefault(key, []).append(_scalar(kind[4:], value))
        else:
            out[key] = _scalar(kind, value)
    return out


def decode(body: bytes) -> dict[str, Any]:
    """The JSON form of a protobuf-encoded object of one of :data:`KINDS`."""
    if not body.startswith(MAGIC):
        raise ProtobufError("the body has no protobuf magic number")
    envelope = decode_message("Unknown", body[len(MAGIC) :])
    type_meta = envelope.get("typeMeta") or {}
    kind = type_meta.get("kind", "")
    if kind not in KINDS:
        raise ProtobufError(f"protobuf bodies of {kind or 'this kind'} are not supported")
    raw = base64.b64decode(envelope.get("raw", ""))
    obj = decode_message(kind, raw)
    return {"apiVersion": type_meta.get("apiVersion", "v1"), "kind": kind, **obj}
