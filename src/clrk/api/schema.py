"""Structural OpenAPI v3 schemas generated from the pydantic models.

Kubernetes wants "structural" schemas: every node typed, no $ref, no titles,
int-or-string spelled exactly one way. Pydantic's JSON Schema is close; this
module rewrites the differences so the same model drives CRDs, the served
OpenAPI documents and `kubectl explain`.
"""

from __future__ import annotations

import copy
from typing import Any

from clrk.api.base import Resource

Schema = dict[str, Any]


def _inline(node: Any, defs: dict[str, Any], seen: tuple[str, ...] = ()) -> Any:
    if isinstance(node, list):
        return [_inline(x, defs, seen) for x in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        name = node["$ref"].rsplit("/", 1)[-1]
        if name in seen:
            raise ValueError(f"recursive schema {name} cannot be structural")
        target = _inline(copy.deepcopy(defs[name]), defs, (*seen, name))
        rest = {k: v for k, v in node.items() if k != "$ref"}
        return {**target, **_inline(rest, defs, seen)}
    return {k: _inline(v, defs, seen) for k, v in node.items() if k != "$defs"}


def _structural(node: Any) -> Any:
    if isinstance(node, list):
        return [_structural(x) for x in node]
    if not isinstance(node, dict):
        return node
    node = {k: v for k, v in node.items() if k not in ("title", "$schema")}
    if node.get("x-kubernetes-int-or-string"):
        out: Schema = {"x-kubernetes-int-or-string": True}
        for k in ("description", "default", "pattern"):
            if k in node:
                out[k] = node[k]
        if "pattern" in out:
            # A pattern would reject integers; the model validates the value instead.
            del out["pattern"]
        return out
    for key in ("anyOf", "oneOf"):
        if key in node:
            options = [o for o in node[key] if o.get("type") != "null"]
            merged = {k: v for k, v in node.items() if k != key}
            if len(options) == 1:
                inner = _structural(options[0])
                out = {**inner, **{k: _structural(v) for k, v in merged.items()}}
                if out.get("default", 0) is None:
                    del out["default"]
                return out
            if not options:
                return _structural(merged)
            # A real union: keep it open rather than invent a type.
            merged.pop(key, None)
            merged["x-kubernetes-preserve-unknown-fields"] = True
            return _structural(merged)
    if "allOf" in node and len(node["allOf"]) == 1:
        inner = _structural(node["allOf"][0])
        rest = {k: v for k, v in node.items() if k != "allOf"}
        return {**inner, **_structural(rest)}
    if "const" in node:
        node["enum"] = [node.pop("const")]
    if "exclusiveMinimum" in node and not isinstance(node["exclusiveMinimum"], bool):
        node["minimum"] = node["exclusiveMinimum"]
        node["exclusiveMinimum"] = True
    if "exclusiveMaximum" in node and not isinstance(node["exclusiveMaximum"], bool):
        node["maximum"] = node["exclusiveMaximum"]
        node["exclusiveMaximum"] = True
    if node.get("additionalProperties") is False:
        del node["additionalProperties"]
    if node.get("additionalProperties") is True or (
            node.get("type") == "object" and "properties" not in node
            and "additionalProperties" not in node):
        node.pop("additionalProperties", None)
        node["type"] = "object"
        node["x-kubernetes-preserve-unknown-fields"] = True
    if "enum" in node and "type" not in node:
        values = node["enum"]
        if all(isinstance(v, str) for v in values):
            node["type"] = "string"
        elif all(isinstance(v, bool) for v in values):
            node["type"] = "boolean"
        elif all(isinstance(v, int) for v in values):
            node["type"] = "integer"
    if not node.get("type") and not node.get("x-kubernetes-preserve-unknown-fields") \
            and "properties" not in node and "items" not in node:
        # Any: accept whatever the user sends, verbatim.
        node["x-kubernetes-preserve-unknown-fields"] = True
    if "properties" in node:
        node["type"] = "object"
        node["properties"] = {k: _structural(v) for k, v in node["properties"].items()}
    if "items" in node:
        node["type"] = "array"
        node["items"] = _structural(node["items"])
    if isinstance(node.get("additionalProperties"), dict):
        node["additionalProperties"] = _structural(node["additionalProperties"])
    if "default" in node and node["default"] is None:
        del node["default"]
    return node


def object_schema(cls: type[Resource]) -> Schema:
    """The structural schema of a whole object of kind ``cls``."""
    raw = cls.model_json_schema(by_alias=True, mode="validation")
    defs = raw.pop("$defs", {})
    inlined = _inline(raw, defs)
    schema = _structural(inlined)
    props = schema.get("properties", {})
    props.pop("metadata", None)
    props["apiVersion"] = {"type": "string", "description": "APIVersion defines the "
                           "versioned schema of this representation of an object."}
    props["kind"] = {"type": "string", "description": "Kind is a string value representing "
                     "the REST resource this object represents."}
    props["metadata"] = {"type": "object"}
    ordered = {k: props[k] for k in ("apiVersion", "kind", "metadata")}
    ordered.update({k: v for k, v in props.items() if k not in ordered})
    out: Schema = {"type": "object", "properties": ordered}
    if cls.__doc__:
        out["description"] = " ".join(cls.__doc__.split())
    required = [r for r in schema.get("required", []) if r not in ("metadata",)]
    if required:
        out["required"] = required
    return out
