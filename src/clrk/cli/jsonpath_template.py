"""kubectl's JSONPath templates (`-o jsonpath=TEMPLATE`), with kubectl's semantics.

A template is literal text with expressions in braces: ``{.metadata.name}``,
``{.items[*].metadata.name}``, ``{range .items[*]}{.metadata.name}{"\\n"}{end}``,
``{.status.conditions[?(@.type=="Ready")].status}``, ``{..name}``, ``{.items[-1:]}``,
``{.metadata.labels.app\\.kubernetes\\.io/name}``, ``{['metadata.name','kind']}``.

As in kubectl (client-go's ``util/jsonpath``): the results of one expression are joined
by spaces; strings print as they are, maps and lists as compact JSON (keys sorted), null
as ``<nil>``; a missing key gives no result (kubectl's default
``--allow-missing-template-keys``), an index out of range is an error; ``[n]`` is a slice
of one; ``['a.b']`` is the path ``.a.b``; a filter compares one value with a literal or
another path (``==``, ``!=``, ``<``, ``<=``, ``>``, ``>=``) or tests existence."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from typing import Any

from clrk.cli.jsonpath_parse import Field as FieldNode
from clrk.cli.jsonpath_parse import (
    Filter,
    Item,
    Literal,
    Range,
    Recursive,
    Slice,
    TemplateError,
    Union,
    Wildcard,
    parse,
)

__all__ = ["TemplateError", "parse", "render"]


def _children(value: Any) -> list[Any]:
    if isinstance(value, dict):
        return list(value.values())
    if isinstance(value, list):
        return list(value)
    if isinstance(value, str):
        return list(value.encode())  # Go indexes a string by byte
    return []


def _recursive(values: list[Any]) -> Iterator[Any]:
    for value in values:
        children = _children(value)
        if children:
            yield value
            yield from _recursive(children)


def _slice(value: list[Any], node: Slice) -> list[Any]:
    n = len(value)
    start = node.start or 0
    if start < 0:
        start += n
    stop = start + 1 if node.single else (n if node.stop is None else node.stop)
    if node.stop is not None and node.stop < 0:
        stop += n
    if stop == start:
        return []
    if not 0 <= start < n:
        raise TemplateError(f"array index out of bounds: index {start}, length {n}")
    if not 0 <= stop <= n:
        raise TemplateError(f"array index out of bounds: index {stop - 1}, length {n}")
    if start > stop:
        raise TemplateError(f"starting index {start} is greater than ending index {stop}")
    step = 1 if node.step is None else node.step
    if step <= 0:
        raise TemplateError("step must be > 0")
    return value[start:stop:step]


def _type(value: Any) -> str:
    """A value's JSON type, for errors (kubectl names Go's)."""
    names = {dict: "map", list: "array", str: "string", bool: "bool", int: "number",
             float: "number"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "string"
    raise TemplateError(f"invalid type for comparison: {_type(value)}")


def _compare(left: Any, op: str, right: Any) -> bool:
    kinds = (_kind(left), _kind(right))
    if kinds[0] != kinds[1]:
        raise TemplateError("incompatible types for comparison")
    if op == "==":
        return bool(left == right)
    if op == "!=":
        return bool(left != right)
    if kinds[0] == "bool":
        raise TemplateError("invalid type for comparison")
    results = {"<": left < right, "<=": left <= right, ">": left > right,
               ">=": left >= right}
    return bool(results[op])


def _filter(values: list[Any], node: Filter) -> list[Any]:
    out: list[Any] = []
    for value in values:
        if value is None:
            continue
        if not isinstance(value, list):
            raise TemplateError(f"{_type(value)} is not array or slice and cannot be filtered")
        for item in value:
            if node.op == "exists":
                try:
                    if _evaluate(node.left, [item]):
                        out.append(item)
                except TemplateError:
                    pass
                continue
            lefts = _evaluate(node.left, [item])
            rights = _evaluate(node.right, [item])
            if not lefts or not rights:
                continue
            if len(lefts) > 1 or len(rights) > 1:
                raise TemplateError("can only compare one element at a time")
            if _compare(lefts[0], node.op, rights[0]):
                out.append(item)
    return out


def _step(values: list[Any], node: Any) -> list[Any]:
    if isinstance(node, FieldNode):
        return [v[node.name] for v in values if isinstance(v, dict) and node.name in v]
    if isinstance(node, Literal):
        return [node.value] if isinstance(node.value, str) else [node.value for _ in values]
    if isinstance(node, Wildcard):
        return [c for v in values if v is not None for c in _children(v)]
    if isinstance(node, Recursive):
        return list(_recursive([v for v in values if v is not None]))
    if isinstance(node, Slice):
        out: list[Any] = []
        for v in values:
            if v is None:
                continue
            if not isinstance(v, list):
                raise TemplateError(f"{_type(v)} is not array or slice")
            out += _slice(v, node)
        return out
    if isinstance(node, Union):
        return [r for branch in node.branches for r in _evaluate(branch, values)]
    if isinstance(node, Filter):
        return _filter(values, node)
    raise TemplateError(f"unexpected node {node}")


def _evaluate(nodes: tuple[Any, ...], values: list[Any]) -> list[Any]:
    for node in nodes:
        values = _step(values, node)
    return values


def _go_float(value: float) -> str:
    """A float as Go's %v prints it (shortest form; exponent from 1e21)."""
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if math.isnan(value):
        return "NaN"
    if value.is_integer() and abs(value) < 1e21:
        return str(int(value))
    text = repr(value)
    if "e" in text:
        mantissa, exp = text.split("e")
        sign = "-" if exp.startswith("-") else "+"
        return f"{mantissa}e{sign}{exp.lstrip('+-').zfill(2)}"
    return text


def _text(value: Any) -> str:
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False)
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return _go_float(value)
    return str(value)


def _render(items: list[Item], data: Any, out: list[str]) -> None:
    for item in items:
        if isinstance(item, str):
            out.append(item)
        elif isinstance(item, Range):
            for value in _evaluate(item.nodes, [data]):
                _render(item.body, value, out)
        else:
            out.append(" ".join(_text(v) for v in _evaluate(item.nodes, [data])))


def render(template: str, data: Any) -> str:
    """``template`` applied to ``data`` (JSON values), as `kubectl -o jsonpath=` prints."""
    out: list[str] = []
    _render(parse(template), data, out)
    return "".join(out)
