"""`clrk get`: objects of one or more kinds, as kubectl shows them (tables, yaml, json,
name, ``jsonpath=TEMPLATE``; ``-A``, ``-l``, ``-w``)."""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer
from lightkube import ApiError, Client

from clrk.cli import output, targets
from clrk.cli.context import Options
from clrk.cli.errors import CLIError
from clrk.cli.targets import Selection
from clrk.cli.watch import watch as watch_changes
from clrk.client import resource_class, to_dict

GET_FORMATS = ("yaml", "json", "wide", "name", "jsonpath")


def labels(selector: str | None) -> dict[str, Any] | None:
    """A ``-l`` selector (``k=v,k!=v,k``) as lightkube takes it."""
    if not selector:
        return None
    out: dict[str, Any] = {}
    for part in selector.split(","):
        if "=" in part:
            k, v = part.split("=", 1)
            out[k.strip().rstrip("=")] = v.strip().lstrip("=")
        else:
            out[part.strip()] = None
    return out


def _fetch(client: Client, sel: Selection, ns: str, all_namespaces: bool,
           selector: dict[str, Any] | None, errors: list[str]) -> list[dict[str, Any]]:
    info = sel.cls.kind_info
    res = resource_class(sel.cls)
    if not sel.names:
        where = "*" if all_namespaces else ns
        return [to_dict(o) for o in client.list(
            res, namespace=where if info.namespaced else None, labels=selector)]
    objs = []
    for name in sel.names:
        try:
            objs.append(to_dict(client.get(res, name,
                                           namespace=ns if info.namespaced else None)))
        except ApiError as err:
            if err.status.code != 404:
                raise
            errors.append(err.status.message or f'{info.plural} "{name}" not found')
    return objs


def get(
    ctx: typer.Context,
    args: Annotated[list[str] | None, typer.Argument(
        metavar="KIND[,KIND] [NAME]",
        help="Kinds (kind, plural, singular or short name) and names; also KIND/NAME "
             "and KIND KIND (plurals or short names).", show_default=False)] = None,
    output_format: Annotated[str | None, typer.Option(
        "-o", "--output", metavar="FORMAT",
        help="yaml, json, wide, name or jsonpath=TEMPLATE.")] = None,
    all_namespaces: Annotated[bool, typer.Option(
        "-A", "--all-namespaces", help="Objects of every namespace.")] = False,
    selector: Annotated[str | None, typer.Option(
        "-l", "--selector", metavar="SELECTOR",
        help="Only objects with these labels (k=v,k!=v,k).")] = None,
    watch: Annotated[bool, typer.Option(
        "-w", "--watch", help="After the objects, print each change until interrupted.")
    ] = False,
    watch_only: Annotated[bool, typer.Option(
        "--watch-only", help="Print only the changes, until interrupted.")] = False,
    show_managed_fields: output.ShowManagedFieldsOpt = False,
) -> None:
    """Show objects of one or more kinds."""
    opts: Options = ctx.obj
    fmt = output.output_format(output_format, GET_FORMATS)
    selections = targets.parse(args or [])
    if all_namespaces and any(s.names for s in selections):
        raise CLIError("a resource cannot be retrieved by name across all namespaces")
    client = opts.client()
    ns = opts.default_namespace()
    if watch or watch_only:
        if len(selections) != 1 or len(selections[0].names) > 1:
            raise CLIError("watch is only supported on one kind, and at most one name")
        sel = selections[0]
        namespaced = sel.cls.kind_info.namespaced
        watch_changes(client, sel, ("*" if all_namespaces else ns) if namespaced else None,
                      labels(selector), fmt, all_namespaces, watch_only, show_managed_fields)
        return
    errors: list[str] = []
    found = [(s, _fetch(client, s, ns, all_namespaces, labels(selector), errors))
             for s in selections]
    _print(found, fmt, all_namespaces, show_managed_fields, ns)
    for message in errors:
        print(f"error: {message}", file=sys.stderr)
    if errors:
        raise SystemExit(1)


def _print(found: list[tuple[Selection, list[dict[str, Any]]]], fmt: str | None,
           all_namespaces: bool, show_managed_fields: bool, ns: str) -> None:
    objs = [o for _, items in found for o in items]
    if fmt in ("yaml", "json") or (fmt or "").startswith(output.JSONPATH):
        single = len(found) == 1 and len(found[0][0].names) == 1 and len(objs) == 1
        print(output.dump(objs, fmt or "", single, show_managed_fields), end="")
        return
    if fmt == "name":
        for sel, items in found:
            for o in items:
                print(f"{sel.cls.kind_info.singular}/{o['metadata']['name']}")
        return
    several = len(found) > 1
    first = True
    for sel, items in found:
        if not items:
            continue
        info = sel.cls.kind_info
        prefix = f"{output.qualified(info)}/" if several else ""
        header, body = output.rows(info, items, fmt == "wide", all_namespaces, prefix)
        if not first:
            print()
        output.print_table(header, body)
        first = False
    if first and not any(sel.names for sel, _ in found):
        namespaced = any(sel.cls.kind_info.namespaced for sel, _ in found)
        where = "" if all_namespaces or not namespaced else f" in {ns} namespace"
        print(f"No resources found{where}.", file=sys.stderr)
