"""What `clrk install --dry-run` shows: an object as it is in the cluster against what applying
would make of it, as a unified diff of their YAML.

Fields the server alone writes (managedFields, resourceVersion, uid, status, ...) differ on every
read and say nothing about the change, so they are left out; a Secret's values are never shown,
only their size and a short hash, so a diff can be pasted anywhere.
"""

from __future__ import annotations

import base64
import binascii
import copy
import difflib
import hashlib
from typing import Any

import yaml

SERVER_METADATA = ("managedFields", "resourceVersion", "generation", "uid", "creationTimestamp")


def redact(value: str) -> str:
    """A Secret data value (base64) as ``<N bytes, sha256 abcd1234>``."""
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raw = value.encode()
    return f"<{len(raw)} bytes, sha256 {hashlib.sha256(raw).hexdigest()[:8]}>"


def comparable(obj: dict[str, Any]) -> dict[str, Any]:
    """``obj`` without server-written fields, and with Secret values redacted."""
    out = copy.deepcopy(obj)
    out.pop("status", None)
    meta = out.get("metadata")
    if isinstance(meta, dict):
        for key in SERVER_METADATA:
            meta.pop(key, None)
    if out.get("kind") == "Secret":
        data = out.get("data")
        if isinstance(data, dict):
            out["data"] = {k: redact(str(v)) for k, v in data.items()}
        string_data = out.get("stringData")
        if isinstance(string_data, dict):
            out["stringData"] = {k: redact(base64.b64encode(str(v).encode()).decode())
                                 for k, v in string_data.items()}
    return out


def as_yaml(obj: dict[str, Any] | None) -> str:
    """The comparable form as YAML (keys sorted, so the order of a read never shows)."""
    return "" if obj is None else yaml.safe_dump(comparable(obj), sort_keys=True)


def unified(live: dict[str, Any] | None, desired: dict[str, Any], label: str) -> str:
    """A unified diff from ``live`` (None: not there) to ``desired``; empty when equal."""
    lines = difflib.unified_diff(
        as_yaml(live).splitlines(keepends=True), as_yaml(desired).splitlines(keepends=True),
        fromfile=f"live/{label}" if live is not None else "/dev/null",
        tofile=f"applied/{label}")
    return "".join(lines)
