"""Rendering objects as kubectl does: tables, YAML, JSON, names and JSONPath templates.

Objects printed as YAML or JSON leave out ``metadata.managedFields`` unless the user
asks for them (kubectl's ``--show-managed-fields``): they are the server's bookkeeping,
long, and rarely what anyone is looking for."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Annotated, Any

import typer
import yaml

from clrk.api.base import KindInfo
from clrk.api.columns import human_age, jsonpath
from clrk.api.meta import without_managed_fields
from clrk.cli import jsonpath_template
from clrk.cli.errors import CLIError

DATA_FORMATS = ("json", "yaml")
JSONPATH = "jsonpath="

OutputOpt = Annotated[str | None, typer.Option(
    "-o", "--output", metavar="FORMAT", help="Print as json or yaml.")]
ShowManagedFieldsOpt = Annotated[bool, typer.Option(
    "--show-managed-fields", help="Keep metadata.managedFields in json and yaml output.")]


def output_format(value: str | None, allowed: Sequence[str] = DATA_FORMATS) -> str | None:
    """The ``-o`` value checked against ``allowed`` ("jsonpath" allows ``jsonpath=...``);
    ``-o=json`` (kubectl's spelling, which click reads as "=json") counts as json."""
    if value is None:
        return None
    value = value.removeprefix("=")
    if value in allowed and value != "jsonpath":
        return value
    if "jsonpath" in allowed and value.startswith(JSONPATH):
        try:
            jsonpath_template.parse(value[len(JSONPATH):])
        except jsonpath_template.TemplateError as err:
            raise CLIError(f"error parsing jsonpath {value[len(JSONPATH):]}: {err}") from None
        return value
    names = [f"{a}=TEMPLATE" if a == "jsonpath" else a for a in allowed]
    choices = ", ".join(names[:-1]) + f" or {names[-1]}" if len(names) > 1 else names[0]
    raise CLIError(f"unknown output format {value!r}: use {choices}")


def _cell(value: Any, column_type: str) -> str:
    if value is None or value == "":
        return "<none>"
    if column_type == "date" and isinstance(value, str):
        return human_age(value)
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def qualified(info: KindInfo) -> str:
    """How kubectl names a kind beside an object's name: ``taskagent.clrk.apoxy.dev``."""
    return f"{info.singular}.{info.group}" if info.group else info.singular


def rows(info: KindInfo, objs: list[dict[str, Any]], wide: bool,
         all_namespaces: bool, prefix: str = "") -> tuple[list[str], list[list[str]]]:
    """The table of ``objs`` by the kind's printer columns; ``prefix`` goes before each
    name (``taskagent.clrk.apoxy.dev/`` when several kinds are printed)."""
    cols = [c for c in info.printer_columns if wide or c.priority == 0]
    header = (["NAMESPACE"] if all_namespaces and info.namespaced else []) + ["NAME"]
    header += [c.name.upper() for c in cols]
    out = []
    for o in objs:
        md = o.get("metadata", {})
        r = ([md.get("namespace", "")] if all_namespaces and info.namespaced else [])
        r.append(prefix + md.get("name", ""))
        r += [_cell(jsonpath(o, c.json_path), c.type) for c in cols]
        out.append(r)
    return header, out


def widths(header: list[str], body: list[list[str]]) -> list[int]:
    return [max(len(str(r[i])) for r in [header, *body]) for i in range(len(header))]


def format_row(row: list[str], column_widths: list[int]) -> str:
    """kubectl's layout: left-aligned columns, three spaces apart, never truncated."""
    return "   ".join(str(c).ljust(w) for c, w in zip(row, column_widths, strict=True)).rstrip()


def print_table(header: list[str], body: list[list[str]]) -> None:
    column_widths = widths(header, body)
    for r in [header, *body]:
        print(format_row(r, column_widths))


def as_list(objs: list[dict[str, Any]]) -> dict[str, Any]:
    """Several objects as kubectl prints them: a ``v1`` List."""
    return {"apiVersion": "v1", "kind": "List", "items": objs,
            "metadata": {"resourceVersion": ""}}


def dump_doc(doc: Any, fmt: str) -> str:
    """One document as JSON (indented, as kubectl) or YAML, ending in a newline."""
    if fmt == "json":
        return json.dumps(doc, indent=4, ensure_ascii=False) + "\n"
    if fmt.startswith(JSONPATH):
        try:
            return jsonpath_template.render(fmt[len(JSONPATH):], doc)
        except jsonpath_template.TemplateError as err:
            raise CLIError(f'error executing jsonpath "{fmt[len(JSONPATH):]}": {err}') from None
    return yaml.safe_dump(doc, sort_keys=False, allow_unicode=True)


def dump(objs: list[dict[str, Any]], fmt: str, single: bool,
         show_managed_fields: bool = False) -> str:
    """Objects as json, yaml or ``jsonpath=TEMPLATE``: the object itself when ``single``,
    else a List. JSONPath sees the objects whole; json and yaml leave managedFields out
    unless ``show_managed_fields``."""
    if not show_managed_fields and not fmt.startswith(JSONPATH):
        objs = [without_managed_fields(o) for o in objs]
    return dump_doc(objs[0] if single and objs else as_list(objs), fmt)
