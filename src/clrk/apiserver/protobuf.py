"""Kubernetes protobuf request bodies for the core kinds we serve (Secret, Namespace).

kubectl's typed commands (`kubectl create secret|namespace`) send built-in kinds as
protobuf and, unlike for CBOR, client-go never falls back to JSON. Responses stay JSON:
those clients also accept it. Only the fields these kinds carry are decoded; anything
else in the body is refused with a message rather than silently dropped.
"""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import Callable, Iterator
from typing import Any

MAGIC = b"k8s\x00"


class ProtobufError(ValueError):
    """A malformed body (400)."""


class UnsupportedKind(ProtobufError):
    """A well-formed body of a kind we only take as JSON (415)."""


Field = tuple[int, int, Any]  # field number, wire type, value (int or bytes)


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise ProtobufError("truncated or oversized varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7


def _fields(buf: bytes) -> Iterator[Field]:
    pos = 0
    while pos < len(buf):
        tag, pos = _varint(buf, pos)
        number, wire = tag >> 3, tag & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
            yield number, wire, value
        elif wire == 2:
            size, pos = _varint(buf, pos)
            if pos + size > len(buf):
                raise ProtobufError("truncated length-delimited field")
            yield number, wire, buf[pos:pos + size]
            pos += size
        elif wire in (1, 5):
            width = 8 if wire == 1 else 4
            yield number, wire, int.from_bytes(buf[pos:pos + width], "little")
            pos += width
        else:
            raise ProtobufError(f"unsupported wire type {wire}")


def _text(value: Any) -> str:
    if not isinstance(value, bytes):
        raise ProtobufError("expected a string field")
    return value.decode("utf-8")


def _map(value: bytes) -> tuple[str, bytes]:
    key, val = "", b""
    for number, _, v in _fields(value):
        if number == 1:
            key = _text(v)
        elif number == 2:
            val = v
    return key, val


def _time(value: bytes) -> str:
    seconds = next((v for n, _, v in _fields(value) if n == 1), 0)
    return dt.datetime.fromtimestamp(seconds, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _owner_reference(value: bytes) -> dict[str, Any]:
    names = {1: "kind", 3: "name", 4: "uid", 5: "apiVersion"}
    out: dict[str, Any] = {}
    for number, _, v in _fields(value):
        if number in names:
            out[names[number]] = _text(v)
        elif number == 6:
            out["controller"] = bool(v)
        elif number == 7:
            out["blockOwnerDeletion"] = bool(v)
    return out


def _object_meta(value: bytes) -> dict[str, Any]:
    strings = {1: "name", 2: "generateName", 3: "namespace", 5: "uid", 6: "resourceVersion"}
    md: dict[str, Any] = {}
    for number, _, v in _fields(value):
        if number in strings:
            md[strings[number]] = _text(v)
        elif number == 7:
            md["generation"] = v
        elif number in (8, 9):
            md["creationTimestamp" if number == 8 else "deletionTimestamp"] = _time(v)
        elif number in (11, 12):
            k, val = _map(v)
            md.setdefault("labels" if number == 11 else "annotations", {})[k] = val.decode()
        elif number == 13:
            md.setdefault("ownerReferences", []).append(_owner_reference(v))
        elif number == 14:
            md.setdefault("finalizers", []).append(_text(v))
        # selfLink (4), deletionGracePeriodSeconds (10) and managedFields (17) are
        # server-owned: ignored, as the JSON path ignores them.
    return md


def _secret(raw: bytes) -> dict[str, Any]:
    obj: dict[str, Any] = {"apiVersion": "v1", "kind": "Secret"}
    for number, _, v in _fields(raw):
        if number == 1:
            obj["metadata"] = _object_meta(v)
        elif number == 2:
            k, val = _map(v)
            obj.setdefault("data", {})[k] = base64.b64encode(val).decode()
        elif number == 3:
            obj["type"] = _text(v)
        elif number == 4:
            k, val = _map(v)
            obj.setdefault("stringData", {})[k] = val.decode()
        elif number == 5:
            obj["immutable"] = bool(v)
        else:
            raise ProtobufError(f"unknown Secret field number {number}")
    return obj


def _namespace(raw: bytes) -> dict[str, Any]:
    obj: dict[str, Any] = {"apiVersion": "v1", "kind": "Namespace"}
    for number, _, v in _fields(raw):
        if number == 1:
            obj["metadata"] = _object_meta(v)
        elif number == 2:
            fins = [_text(f) for n, _, f in _fields(v) if n == 1]
            obj["spec"] = {"finalizers": fins} if fins else {}
        # status (3) is server-owned.
    return obj


DECODERS: dict[tuple[str, str], Callable[[bytes], dict[str, Any]]] = {
    ("v1", "Secret"): _secret,
    ("v1", "Namespace"): _namespace,
}


def decode(body: bytes) -> dict[str, Any]:
    """A `k8s\\0`-framed runtime.Unknown holding a Secret or Namespace -> its JSON form."""
    if not body.startswith(MAGIC):
        raise ProtobufError("missing the k8s protobuf magic prefix")
    api_version = kind = ""
    raw = b""
    for number, _, v in _fields(body[len(MAGIC):]):
        if number == 1:
            for n, _, tv in _fields(v):
                if n == 1:
                    api_version = _text(tv)
                elif n == 2:
                    kind = _text(tv)
        elif number == 2:
            raw = v
        elif number == 3 and v:
            raise ProtobufError(f"unsupported contentEncoding {_text(v)!r}")
    decoder = DECODERS.get((api_version, kind))
    if decoder is None:
        raise UnsupportedKind(f"protobuf bodies are accepted for core Secret and Namespace "
                            f"only, not {kind or 'unknown kind'} {api_version}; send JSON")
    return decoder(raw)
