"""Structural OpenAPI v3 schemas generated from the pydantic models.

Kubernetes wants "structural" schemas: every node typed, no $ref, no titles,
int-or-string spelled exactly one way. Pydantic's JSON Schema is close; this
module rewrites the differences so the same model drives CRDs, the served
OpenAPI documents and `kubectl explain`.
"""

from __future__ import annotations

import copy
from typing import Any

from clrk.api.base import (
    API_VERSION_DESCRIPTION,
    KIND_DESCRIPTION,
    METADATA_DESCRIPTION,
    Resource,
)

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
        # The field's own keys (its description above all) win over the model's: kubectl
        # explain shows a field's description, not its type's docstring.
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
    props["apiVersion"] = {"type": "string", "description": API_VERSION_DESCRIPTION}
    props["kind"] = {"type": "string", "description": KIND_DESCRIPTION}
    # A CRD's metadata may not be constrained (kube-apiserver owns ObjectMeta).
    props["metadata"] = {"type": "object", "description": METADATA_DESCRIPTION}
    ordered = {k: props[k] for k in ("apiVersion", "kind", "metadata")}
    ordered.update({k: v for k, v in props.items() if k not in ordered})
    out: Schema = {"type": "object", "properties": ordered}
    if cls.__doc__:
        out["description"] = " ".join(cls.__doc__.split())
    required = [r for r in schema.get("required", []) if r not in ("metadata",)]
    if required:
        out["required"] = required
    return out


def _meta_field(schema: Schema, description: str) -> Schema:
    return {**schema, "description": description}


def object_meta_schema() -> Schema:
    """ObjectMeta as an OpenAPI document serves it, each field with the description
    Kubernetes gives it (``kubectl explain <kind>.metadata`` shows them). CRDs cannot carry
    this: there metadata stays an unconstrained object."""
    s: Schema = {"type": "string"}
    m: Schema = {"type": "object", "additionalProperties": {"type": "string"}}
    free: Schema = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    return {"description": "ObjectMeta is metadata that all persisted resources must have, "
            "which includes all objects users must create.",
            "type": "object", "properties": {
        "name": _meta_field(s, "Name of the object, unique in its namespace (or cluster, "
                            "for cluster-scoped kinds). Cannot be updated."),
        "generateName": _meta_field(s, "A prefix the server uses to generate a unique name "
                                    "when name is not set."),
        "namespace": _meta_field(s, "The namespace the object is in; empty for "
                                 "cluster-scoped kinds. Cannot be updated."),
        "uid": _meta_field(s, "The unique id the server gave the object when it was "
                           "created. Read-only."),
        "resourceVersion": _meta_field(s, "An opaque version of the object, changed on every "
                                       "write; used for optimistic concurrency and watches. "
                                       "Read-only."),
        "generation": _meta_field({"type": "integer", "format": "int64"},
                                  "A sequence number of the desired state, bumped on each "
                                  "change of spec. Read-only."),
        "creationTimestamp": _meta_field({"type": "string", "format": "date-time"},
                                         "When the object was created (RFC 3339). "
                                         "Read-only."),
        "deletionTimestamp": _meta_field({"type": "string", "format": "date-time"},
                                         "When the object's deletion was requested; it goes "
                                         "once its finalizers are gone. Read-only."),
        "labels": _meta_field(m, "Key/value pairs to organize and select objects (label "
                              "selectors)."),
        "annotations": _meta_field(m, "Key/value pairs for tools and users; not used for "
                                   "selection."),
        "finalizers": _meta_field({"type": "array", "items": s},
                                  "Names that must be removed before the object is deleted "
                                  "from storage."),
        "ownerReferences": _meta_field({"type": "array", "items": free},
                                       "Objects this one depends on; when all of them are "
                                       "deleted, this one is garbage-collected."),
        "managedFields": _meta_field({"type": "array", "items": free},
                                     "Which field manager set which fields (server-side "
                                     "apply). Read-only to most clients."),
    }}
