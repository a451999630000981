"""Every field of every kind is described, wherever its schema goes: the models, the CRDs
and the OpenAPI documents the API server serves (what `kubectl explain` reads).

A field with no description shows `<no description>` in `kubectl explain` and an empty
cell in docs/reference. A field whose type is a model needs its own description: the
model's docstring says what the type is, not what the field is for.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import BaseModel

from clrk.api import all_kinds
from clrk.api.base import Resource
from clrk.api.crd import crd_for
from clrk.api.schema import object_meta_schema, object_schema
from clrk.apiserver.openapi import group_version_document

KINDS = sorted(all_kinds(), key=lambda c: c.kind_info.kind)
Schema = dict[str, Any]


def _undescribed(node: Schema, path: str) -> Iterator[str]:
    """Property paths (``spec.rules[].matches[].provider``) under ``node`` without a
    description."""
    for name, prop in (node.get("properties") or {}).items():
        here = f"{path}.{name}" if path else name
        if not str(prop.get("description") or "").strip():
            yield here
        yield from _undescribed(prop, here)
    if isinstance(node.get("items"), dict):
        yield from _undescribed(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from _undescribed(node["additionalProperties"], f"{path}{{}}")


def _problems(kind: str, schema: Schema) -> list[str]:
    out = [f"{kind}.{p}" for p in _undescribed(schema, "")]
    if not str(schema.get("description") or "").strip():
        out.insert(0, f"{kind} (the kind itself: give its class a docstring)")
    return out


def _fail(where: str, problems: list[str]) -> None:
    if problems:
        pytest.fail(f"{len(problems)} field(s) of {where} have no description; add "
                    "Field(description=...) in src/clrk/api:\n  " + "\n  ".join(problems),
                    pytrace=False)


def _resolve(node: Any, schemas: Schema, skip: frozenset[str]) -> Any:
    """A served schema with its $refs (and one-element allOfs) inlined, as kubectl
    explain reads it; the components named in ``skip`` are left as a bare object."""
    if isinstance(node, list):
        return [_resolve(n, schemas, skip) for n in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        name = node["$ref"].rsplit("/", 1)[-1]
        target = {"type": "object"} if name in skip else _resolve(schemas[name], schemas,
                                                                  skip)
        return {**target, **{k: _resolve(v, schemas, skip) for k, v in node.items()
                             if k != "$ref"}}
    if isinstance(node.get("allOf"), list) and len(node["allOf"]) == 1:
        inner = _resolve(node["allOf"][0], schemas, skip)
        return {**inner, **{k: _resolve(v, schemas, skip) for k, v in node.items()
                            if k != "allOf"}}
    return {k: _resolve(v, schemas, skip) for k, v in node.items()}


def _served(cls: type[Resource], skip: frozenset[str] = frozenset()) -> Schema:
    info = cls.kind_info
    doc = group_version_document(info.group, info.version)
    assert doc is not None
    schemas = doc["components"]["schemas"]
    name = next(n for n, s in schemas.items()
                if {"group": info.group, "version": info.version, "kind": info.kind}
                in s.get("x-kubernetes-group-version-kind", []))
    resolved: Schema = _resolve(schemas[name], schemas, skip)
    return resolved


def _models(cls: type[BaseModel], seen: set[type[BaseModel]]) -> Iterator[type[BaseModel]]:
    if cls in seen:
        return
    seen.add(cls)
    yield cls
    for field in cls.model_fields.values():
        for inner in _nested(field.annotation):
            yield from _models(inner, seen)


def _nested(annotation: Any) -> Iterator[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield annotation
        return
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is not None:
        for arg in typing.get_args(annotation):
            yield from _nested(arg)


@pytest.mark.parametrize("cls", KINDS, ids=lambda c: c.kind_info.kind)
def test_every_model_field_has_its_own_description(cls: type[Resource]) -> None:
    """In the models themselves: every field of the kind and of every model it contains
    (spec, status, list items, nested objects) has a description of its own."""
    problems = [f"{model.__name__}.{name} ({field.alias or name})"
                for model in _models(cls, set())
                for name, field in model.model_fields.items()
                if not (field.description or "").strip()]
    _fail(f"the models of {cls.kind_info.kind}", problems)


@pytest.mark.parametrize("cls", KINDS, ids=lambda c: c.kind_info.kind)
def test_crd_schema_describes_every_field(cls: type[Resource]) -> None:
    schema = crd_for(cls)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    _fail(f"the CRD of {cls.kind_info.kind}", _problems(cls.kind_info.kind, schema))


@pytest.mark.parametrize("cls", KINDS, ids=lambda c: c.kind_info.kind)
def test_served_openapi_describes_every_field(cls: type[Resource]) -> None:
    """The API server's /openapi/v3 document, which `kubectl explain` reads. ObjectMeta
    (metadata's fields) is checked on its own below."""
    served = _served(cls, skip=frozenset({"io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"}))
    _fail(f"the served OpenAPI of {cls.kind_info.kind}", _problems(cls.kind_info.kind, served))


def test_a_fields_description_wins_over_its_models_docstring() -> None:
    """A field typed by a model (spec, template, a list of them) carries the field's
    description in the schema, not the model's docstring."""
    spec = object_schema(KINDS[0])["properties"]["spec"]
    assert spec["description"] == KINDS[0].model_fields["spec"].description
    from clrk.api.agents import TaskAgent
    props = object_schema(TaskAgent)["properties"]
    template = props["spec"]["properties"]["template"]
    assert template["description"] == \
        TaskAgent.model_fields["spec"].annotation.model_fields[  # type: ignore[union-attr]
            "template"].description
    assert props["status"]["description"] == TaskAgent.model_fields["status"].description
    assert props["metadata"]["description"] and props["apiVersion"]["description"]


def test_object_meta_schema_describes_every_field() -> None:
    """clrk.api.schema.object_meta_schema: ObjectMeta with Kubernetes' descriptions."""
    _fail("object_meta_schema()", _problems("ObjectMeta", object_meta_schema()))


def test_served_object_meta_describes_every_field() -> None:
    """`kubectl explain taskagent.metadata` reads the served ObjectMeta."""
    served = _served(KINDS[0])
    _fail("the served ObjectMeta", _problems("ObjectMeta", served["properties"]["metadata"]))
