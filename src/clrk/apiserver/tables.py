"""meta.k8s.io/v1 Table responses, so `kubectl get` shows each kind's columns."""

from __future__ import annotations

import re
from typing import Any

from clrk.api.base import KindInfo

_FILTER = re.compile(r'^\[\?\(@\.([A-Za-z0-9_]+)==["\']([^"\']*)["\']\)\]')
_INDEX = re.compile(r"^\[(\d+)\]")
_NAME = re.compile(r"^\.([A-Za-z0-9_-]+)")


def jsonpath(obj: Any, path: str) -> Any:
    """Evaluate the JSONPath subset used by printer columns; None when absent."""
    cur: Any = obj
    rest = path
    while rest:
        if m := _NAME.match(rest):
            cur = cur.get(m.group(1)) if isinstance(cur, dict) else None
        elif m := _INDEX.match(rest):
            i = int(m.group(1))
            cur = cur[i] if isinstance(cur, list) and i < len(cur) else None
        elif m := _FILTER.match(rest):
            field, value = m.groups()
            cur = next((x for x in cur if isinstance(x, dict) and str(x.get(field)) == value),
                       None) if isinstance(cur, list) else None
        else:
            return None
        rest = rest[m.end():]
        if cur is None:
            return None
    return cur


def _cell(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, (dict, list)):
        import json

        return json.dumps(value, separators=(",", ":"))
    return value


def column_definitions(info: KindInfo) -> list[dict[str, Any]]:
    cols = [{"name": "Name", "type": "string", "format": "name", "priority": 0,
             "description": "Name must be unique within a namespace."}]
    for c in info.printer_columns:
        col_type = "string" if c.type == "date" else c.type
        fmt = "date" if c.type == "date" else c.format
        cols.append({"name": c.name, "type": col_type, "format": fmt,
                     "priority": c.priority, "description": c.description})
    if not any(c.json_path == ".metadata.creationTimestamp" for c in info.printer_columns):
        cols.append({"name": "Age", "type": "string", "format": "date", "priority": 0,
                     "description": "Time since creation."})
    return cols


def row(info: KindInfo, obj: dict[str, Any], include: str) -> dict[str, Any]:
    cells: list[Any] = [obj.get("metadata", {}).get("name", "")]
    cells += [_cell(jsonpath(obj, c.json_path)) for c in info.printer_columns]
    if not any(c.json_path == ".metadata.creationTimestamp" for c in info.printer_columns):
        cells.append(obj.get("metadata", {}).get("creationTimestamp"))
    out: dict[str, Any] = {"cells": cells}
    if include == "Object":
        out["object"] = obj
    elif include != "None":
        out["object"] = {
            "kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
            "metadata": obj.get("metadata", {}),
        }
    return out


def table(info: KindInfo, objs: list[dict[str, Any]], include: str,
          list_meta: dict[str, Any]) -> dict[str, Any]:
    return {
        "kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": list_meta,
        "columnDefinitions": column_definitions(info),
        "rows": [row(info, o, include) for o in objs],
    }
