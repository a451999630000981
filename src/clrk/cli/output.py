"""Rendering objects as kubectl-like tables, YAML or JSON."""

from __future__ import annotations

import json
from typing import Any

import yaml

from clrk.api.base import KindInfo
from clrk.api.columns import human_age, jsonpath


def _cell(value: Any, column_type: str) -> str:
    if value is None or value == "":
        return "<none>"
    if column_type == "date" and isinstance(value, str):
        return human_age(value)
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def rows(info: KindInfo, objs: list[dict[str, Any]], wide: bool,
         all_namespaces: bool) -> tuple[list[str], list[list[str]]]:
    cols = [c for c in info.printer_columns if wide or c.priority == 0]
    header = (["NAMESPACE"] if all_namespaces and info.namespaced else []) + ["NAME"]
    header += [c.name.upper() for c in cols]
    out = []
    for o in objs:
        md = o.get("metadata", {})
        r = ([md.get("namespace", "")] if all_namespaces and info.namespaced else [])
        r.append(md.get("name", ""))
        r += [_cell(jsonpath(o, c.json_path), c.type) for c in cols]
        out.append(r)
    return header, out


def print_table(header: list[str], body: list[list[str]]) -> None:
    """kubectl's layout: left-aligned columns, three spaces apart, never truncated."""
    widths = [max(len(str(r[i])) for r in [header, *body]) for i in range(len(header))]
    for r in [header, *body]:
        print("   ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())


def dump(objs: list[dict[str, Any]], fmt: str, single: bool) -> str:
    doc: Any = objs[0] if single and objs else {"apiVersion": "v1", "kind": "List",
                                                   "items": objs}
    if fmt == "json":
        return json.dumps(doc, indent=2)
    return yaml.safe_dump(doc, sort_keys=False)
