"""The Kubernetes structural-schema rules, checked without a kube-apiserver.

From the apiextensions validation of CRDs: every node has a type (unless it is
int-or-string or preserves unknown fields); no $ref; int-or-string uses exactly the
allowed anyOf form; logical junctors carry no type, default, description,
additionalProperties or nullable; properties and additionalProperties exclude each
other; metadata may only constrain name and generateName.
"""

from __future__ import annotations

from typing import Any

_JUNCTORS = ("anyOf", "allOf", "oneOf", "not")
_FORBIDDEN_IN_JUNCTOR = ("type", "default", "description", "additionalProperties",
                         "nullable", "x-kubernetes-preserve-unknown-fields", "title")
_INT_OR_STRING = [{"type": "integer"}, {"type": "string"}]


def _junctor_problems(node: Any, path: str) -> list[str]:
    out: list[str] = []
    if isinstance(node, list):
        for i, n in enumerate(node):
            out += _junctor_problems(n, f"{path}[{i}]")
    elif isinstance(node, dict):
        for k in _FORBIDDEN_IN_JUNCTOR:
            if k in node:
                out.append(f"{path}: {k} is not allowed inside a logical junctor")
        for k, v in node.items():
            if k in ("properties",):
                for pk, pv in v.items():
                    out += _junctor_problems(pv, f"{path}.properties.{pk}")
            elif k in ("items", *_JUNCTORS):
                out += _junctor_problems(v, f"{path}.{k}")
    return out


def check(schema: dict[str, Any], path: str = "", root: bool = True) -> list[str]:
    """Every structural-schema violation in ``schema`` (empty when structural)."""
    problems: list[str] = []
    if "$ref" in schema:
        problems.append(f"{path}: $ref is not allowed")
    if "title" in schema:
        problems.append(f"{path}: title should be dropped")
    int_or_string = schema.get("x-kubernetes-int-or-string") is True
    preserve = schema.get("x-kubernetes-preserve-unknown-fields") is True
    if int_or_string:
        if "type" in schema:
            problems.append(f"{path}: int-or-string must not set type")
        if "anyOf" in schema and schema["anyOf"] != _INT_OR_STRING:
            problems.append(f"{path}: int-or-string anyOf must be exactly integer|string")
    elif not preserve and not schema.get("type"):
        problems.append(f"{path}: missing type")
    if "properties" in schema and "additionalProperties" in schema:
        problems.append(f"{path}: properties and additionalProperties are exclusive")
    if schema.get("type") == "array" and "items" not in schema:
        problems.append(f"{path}: arrays need items")
    for k in _JUNCTORS:
        if k in schema and not (int_or_string and k == "anyOf"):
            problems += _junctor_problems(schema[k], f"{path}.{k}")
    for name, sub in (schema.get("properties") or {}).items():
        sub_path = f"{path}.{name}"
        if root and name == "metadata":
            extra = set(sub.get("properties", {})) - {"name", "generateName"}
            if extra:
                problems.append(f"{sub_path}: only name and generateName may be specified")
        problems += check(sub, sub_path, root=False)
    if isinstance(schema.get("items"), dict):
        problems += check(schema["items"], f"{path}[]", root=False)
    if isinstance(schema.get("additionalProperties"), dict):
        problems += check(schema["additionalProperties"], f"{path}{{}}", root=False)
    return problems
