"""meta.k8s.io/v1 Table responses, so `kubectl get` shows each kind's columns."""

from __future__ import annotations

import json
from typing import Any

from clrk.api.base import KindInfo
from clrk.api.columns import human_age, jsonpath


def _cell(value: Any, column_type: str = "string") -> Any:
    if value is None:
        return "<none>" if column_type != "date" else "<unknown>"
    if column_type == "date" and isinstance(value, str):
        return human_age(value)
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"))
    return value


def column_definitions(info: KindInfo) -> list[dict[str, Any]]:
    cols = [{"name": "Name", "type": "string", "format": "name", "priority": 0,
             "description": "Name must be unique within a namespace."}]
    for c in info.printer_columns:
        col_type = "string" if c.type == "date" else c.type
        cols.append({"name": c.name, "type": col_type, "format": c.format,
                     "priority": c.priority, "description": c.description})
    if not any(c.json_path == ".metadata.creationTimestamp" for c in info.printer_columns):
        cols.append({"name": "Age", "type": "string", "format": "", "priority": 0,
                     "description": "Time since creation."})
    return cols


def row(info: KindInfo, obj: dict[str, Any], include: str) -> dict[str, Any]:
    cells: list[Any] = [obj.get("metadata", {}).get("name", "")]
    cells += [_cell(jsonpath(obj, c.json_path), c.type) for c in info.printer_columns]
    if not any(c.json_path == ".metadata.creationTimestamp" for c in info.printer_columns):
        cells.append(_cell(obj.get("metadata", {}).get("creationTimestamp"), "date"))
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
