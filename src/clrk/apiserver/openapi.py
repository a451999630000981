"""OpenAPI documents in the shape kube-apiserver serves them.

kubectl reads `/openapi/v3` to decide two things: whether the server validates
fields itself (a PATCH operation tagged with the kind's
`x-kubernetes-group-version-kind` that lists the `fieldValidation` query
parameter), and whether to send strategic merge patches (only if that PATCH
operation's request body lists the strategic-merge media type — it never does
here, so kubectl uses JSON merge patch for clrk kinds and its built-in scheme
for core kinds). `kubectl explain` reads `components.schemas`.
"""

from __future__ import annotations

import hashlib
import json
from functools import cache
from typing import Any

from clrk import __version__
from clrk.api.base import METADATA_DESCRIPTION, KindInfo
from clrk.api.registry import all_kinds
from clrk.api.schema import object_meta_schema, object_schema

Doc = dict[str, Any]
_PATCH_TYPES = ("application/json-patch+json", "application/merge-patch+json",
                "application/apply-patch+yaml")
_OBJECT_META = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"


def _schema_name(info: KindInfo) -> str:
    if not info.group:
        return f"io.k8s.api.core.{info.version}.{info.kind}"
    rev = ".".join(reversed(info.group.split(".")))
    return f"{rev}.{info.version}.{info.kind}"


def _gvk(info: KindInfo, kind: str | None = None) -> dict[str, str]:
    return {"group": info.group, "version": info.version, "kind": kind or info.kind}


def _q(name: str, description: str, schema_type: str = "string") -> Doc:
    return {"name": name, "in": "query", "description": description,
            "schema": {"type": schema_type, "uniqueItems": True}}


_WRITE_PARAMS = [
    _q("dryRun", "When present, indicates that modifications should not be persisted."),
    _q("fieldManager", "A name associated with the actor or entity making these changes."),
    _q("fieldValidation", "Strict, Warn or Ignore: what to do with unknown or duplicate "
       "fields."),
]
_LIST_PARAMS = [
    _q("allowWatchBookmarks", "Request watch events with type BOOKMARK.", "boolean"),
    _q("continue", "The continue option from a previous list."),
    _q("fieldSelector", "A selector to restrict the list of returned objects by fields."),
    _q("labelSelector", "A selector to restrict the list of returned objects by labels."),
    _q("limit", "Maximum number of responses to return.", "integer"),
    _q("resourceVersion", "Which version of the resource to start from."),
    _q("resourceVersionMatch", "How resourceVersion applies to list calls."),
    _q("sendInitialEvents", "Send synthetic ADDED events for existing objects first.",
       "boolean"),
    _q("timeoutSeconds", "Timeout for the list/watch call.", "integer"),
    _q("watch", "Watch for changes and return them as a stream.", "boolean"),
]


def _ref(name: str) -> Doc:
    return {"$ref": f"#/components/schemas/{name}"}


def _body(name: str, types: tuple[str, ...] = ("application/json", "application/yaml")) -> Doc:
    return {"content": {t: {"schema": _ref(name)} for t in types}, "required": True}


def _ok(name: str) -> Doc:
    return {"200": {"description": "OK", "content": {"application/json": {
        "schema": _ref(name)}}}}


def _op(action: str, info: KindInfo, ident: str, name: str, params: list[Doc],
        body: Doc | None = None, kind: str | None = None) -> Doc:
    op: Doc = {"description": f"{action} {info.kind}", "operationId": ident,
               "responses": _ok(name), "x-kubernetes-action": action,
               "x-kubernetes-group-version-kind": _gvk(info, kind), "parameters": params}
    if body is not None:
        op["requestBody"] = body
    return op


def _paths(info: KindInfo) -> dict[str, Doc]:
    prefix = f"/apis/{info.group}/{info.version}" if info.group else f"/api/{info.version}"
    name = _schema_name(info)
    list_name = name + "List"
    path_params = [{"name": "name", "in": "path", "required": True,
                    "schema": {"type": "string"}}]
    if info.namespaced:
        path_params.append({"name": "namespace", "in": "path", "required": True,
                            "schema": {"type": "string"}})
        coll = f"{prefix}/namespaces/{{namespace}}/{info.plural}"
    else:
        coll = f"{prefix}/{info.plural}"
    ns_params = path_params[1:]
    ident = info.kind
    patch_body = {"content": {t: {"schema": {"type": "object"}} for t in _PATCH_TYPES},
                  "required": True}
    paths: dict[str, Doc] = {
        coll: {
            "get": _op("list", info, f"list{ident}", list_name, ns_params + _LIST_PARAMS,
                       kind=info.list_kind),
            "delete": _op("deletecollection", info, f"deletecollection{ident}", "Status",
                          ns_params + _LIST_PARAMS + _WRITE_PARAMS[:1]),
        },
        f"{coll}/{{name}}": {
            "get": _op("get", info, f"read{ident}", name, path_params),
            "put": _op("put", info, f"replace{ident}", name, path_params + _WRITE_PARAMS,
                       _body(name)),
            "patch": _op("patch", info, f"patch{ident}", name,
                         [*path_params, *_WRITE_PARAMS,
                          _q("force", "Force apply requests to take ownership.", "boolean")],
                         patch_body),
            "delete": _op("delete", info, f"delete{ident}", "Status",
                          path_params + _WRITE_PARAMS[:1]),
        },
    }
    if info.user_creatable:
        paths[coll]["post"] = _op("post", info, f"create{ident}", name,
                                  ns_params + _WRITE_PARAMS, _body(name))
    if info.namespaced:
        paths[f"{prefix}/{info.plural}"] = {
            "get": _op("list", info, f"list{ident}ForAllNamespaces", list_name, _LIST_PARAMS,
                       kind=info.list_kind)}
    if info.has_status:
        paths[f"{coll}/{{name}}/status"] = {
            "get": _op("get", info, f"read{ident}Status", name, path_params),
            "put": _op("put", info, f"replace{ident}Status", name,
                       path_params + _WRITE_PARAMS, _body(name)),
            "patch": _op("patch", info, f"patch{ident}Status", name,
                         [*path_params, *_WRITE_PARAMS,
                          _q("force", "Force apply requests to take ownership.", "boolean")],
                         patch_body),
        }
    return paths


def _object_meta() -> Doc:
    return dict(object_meta_schema())


def _kind_schema(info: KindInfo, cls: Any) -> Doc:
    schema = object_schema(cls)
    schema["properties"]["metadata"] = {"allOf": [_ref(_OBJECT_META)],
                                        "description": METADATA_DESCRIPTION}
    schema["x-kubernetes-group-version-kind"] = [_gvk(info)]
    return schema


@cache
def group_version_document(group: str, version: str) -> Doc | None:
    kinds = [c for c in all_kinds()
             if c.kind_info.group == group and c.kind_info.version == version]
    if not kinds:
        return None
    paths: dict[str, Doc] = {}
    schemas: dict[str, Doc] = {
        _OBJECT_META: _object_meta(),
        "Status": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
    }
    for cls in sorted(kinds, key=lambda c: c.kind_info.kind):
        info = cls.kind_info
        paths.update(_paths(info))
        name = _schema_name(info)
        schemas[name] = _kind_schema(info, cls)
        schemas[name + "List"] = {
            "type": "object", "x-kubernetes-group-version-kind": [_gvk(info, info.list_kind)],
            "properties": {"apiVersion": {"type": "string"}, "kind": {"type": "string"},
                           "metadata": {"type": "object"},
                           "items": {"type": "array", "items": _ref(name)}},
            "required": ["items"],
        }
    title = f"{group or 'core'}/{version}"
    return {"openapi": "3.0.0", "info": {"title": "clrk", "version": f"{title} {__version__}"},
            "paths": paths, "components": {"schemas": schemas}}


def document_hash(doc: Doc) -> str:
    return hashlib.sha512(json.dumps(doc, sort_keys=True).encode()).hexdigest().upper()


@cache
def root_document(groups: frozenset[str] | None = None) -> Doc:
    """The OpenAPI v3 index of the group-versions served (all when ``groups`` is None)."""
    paths: dict[str, Doc] = {}
    for gv in sorted({(c.kind_info.group, c.kind_info.version) for c in all_kinds()
                      if groups is None or c.kind_info.group in groups}):
        group, version = gv
        rel = f"apis/{group}/{version}" if group else f"api/{version}"
        doc = group_version_document(group, version)
        assert doc is not None
        paths[rel] = {"serverRelativeURL": f"/openapi/v3/{rel}?hash={document_hash(doc)}"}
    return {"paths": paths}


def openapi_v2_document() -> Doc:
    """Deliberately without definitions: kubectl then patches clrk kinds with JSON merge."""
    return {"swagger": "2.0", "info": {"title": "clrk", "version": __version__},
            "paths": {}, "definitions": {}}


V2_PROTOBUF = "application/com.github.proto-openapi.spec.v2@v1.0+protobuf"


def _pb_string(number: int, text: str) -> bytes:
    return _pb_bytes(number, text.encode())


def _pb_bytes(number: int, value: bytes) -> bytes:
    out = bytearray([number << 3 | 2])
    n = len(value)
    while n > 0x7F:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out) + value


def openapi_v2_protobuf() -> bytes:
    """The same document as gnostic's ``openapi_v2.Document`` (swagger = 1, info = 2 with
    title = 1 and version = 2), the only form kubectl reads: it asks for v2 when a kind is
    missing from v3, and must find nothing there so that it says the kind is unknown."""
    doc = openapi_v2_document()
    info = _pb_string(1, doc["info"]["title"]) + _pb_string(2, doc["info"]["version"])
    return _pb_string(1, doc["swagger"]) + _pb_bytes(2, info)
