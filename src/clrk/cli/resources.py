"""`clrk apply`, `clrk get`, `clrk delete`: generic verbs over every kind."""

from __future__ import annotations

import sys
import time
from typing import Annotated, Any

import typer
from lightkube import ApiError, Client
from lightkube.types import PatchType

from clrk.api.base import Resource
from clrk.api.registry import lookup
from clrk.cli import output
from clrk.cli.context import Options
from clrk.cli.errors import CLIError
from clrk.cli.manifests import Manifest, load
from clrk.client import FIELD_MANAGER, resource_class, to_dict


def resolve(kind: str) -> type[Resource]:
    cls = lookup(kind)
    if cls is None:
        raise CLIError(f'the server doesn\'t have a resource type "{kind}"')
    return cls


def apply_manifest(client: Client, m: Manifest, namespace: str, force: bool,
                   dry_run: bool = False) -> dict[str, Any]:
    body = dict(m.body)
    body["metadata"] = dict(body.get("metadata") or {})
    if m.cls.kind_info.namespaced:
        body["metadata"].setdefault("namespace", namespace)
    else:
        body["metadata"].pop("namespace", None)
    res = resource_class(m.cls)
    obj = res.from_dict(body)
    # lightkube's apply has no fieldValidation: the same request, strict as kubectl's
    # (an unknown or duplicate field is an error naming it, not silently dropped).
    result = client._client.request(
        "patch", res=res, name=body["metadata"].get("name"),
        namespace=body["metadata"].get("namespace"), obj=obj,
        headers={"Content-Type": PatchType.APPLY.value},
        params={"force": "true" if force else None, "fieldManager": FIELD_MANAGER,
                "dryRun": "All" if dry_run else None, "fieldValidation": "Strict"})
    return to_dict(result)


def apply(
    ctx: typer.Context,
    filename: Annotated[list[str], typer.Option("-f", "--filename",
                                                help="File, directory or - for stdin.")],
    recursive: Annotated[bool, typer.Option("-R", "--recursive")] = False,
    force_conflicts: Annotated[bool, typer.Option("--force-conflicts")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run")] = False,
) -> None:
    """Server-side apply manifests (field manager `clrk`)."""
    opts: Options = ctx.obj
    manifests = load(filename, recursive)
    client = opts.client()
    ns = opts.default_namespace()
    failed = 0
    for m in manifests:  # every document, each with its own outcome
        try:
            apply_manifest(client, m, ns, force_conflicts, dry_run)
        except ApiError as err:
            message = f"{m.source}: {m.label}: {err.status.message}"
            if len(manifests) == 1:
                raise CLIError(message) from None
            print(f"error: {message}", file=sys.stderr)
            failed += 1
            continue
        suffix = " (dry run)" if dry_run else ""
        print(f"{m.label} serverside-applied{suffix}")
    if failed:
        raise CLIError(f"{failed} of {len(manifests)} objects were not applied")


def get(
    ctx: typer.Context,
    kind: Annotated[str, typer.Argument(help="Kind, plural, singular or short name.")],
    name: Annotated[str | None, typer.Argument()] = None,
    output_format: Annotated[str | None, typer.Option("-o", "--output",
                                                      help="yaml|json|wide|name")] = None,
    all_namespaces: Annotated[bool, typer.Option("-A", "--all-namespaces")] = False,
    selector: Annotated[str | None, typer.Option("-l", "--selector")] = None,
) -> None:
    """Show objects of a kind."""
    opts: Options = ctx.obj
    if output_format not in (None, "yaml", "json", "wide", "name"):
        raise CLIError(f"unknown output format {output_format!r}: use yaml, json, wide or name")
    cls = resolve(kind)
    info = cls.kind_info
    client = opts.client()
    res = resource_class(cls)
    ns = opts.default_namespace()
    if name:
        objs = [to_dict(client.get(res, name, namespace=ns if info.namespaced else None))]
    else:
        labels = _labels(selector)
        where = "*" if all_namespaces else ns
        objs = [to_dict(o) for o in client.list(
            res, namespace=where if info.namespaced else None, labels=labels)]
    if output_format in ("yaml", "json"):
        print(output.dump(objs, output_format, single=bool(name)), end="")
        return
    if output_format == "name":
        for o in objs:
            print(f"{info.singular}/{o['metadata']['name']}")
        return
    if not objs:
        where = "" if all_namespaces or not info.namespaced else f" in {ns} namespace"
        print(f"No resources found{where}.")
        return
    header, body = output.rows(info, objs, output_format == "wide", all_namespaces)
    output.print_table(header, body)


def _labels(selector: str | None) -> dict[str, Any] | None:
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


def _wait_gone(client: Client, res: Any, name: str, namespace: str | None,
               timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            client.get(res, name, namespace=namespace)
        except ApiError as err:
            if err.status.code == 404:
                return
            raise
        time.sleep(0.2)
    raise CLIError(f"timed out waiting for {name} to be deleted (finalizers pending?)")


def delete(
    ctx: typer.Context,
    kind: Annotated[str | None, typer.Argument()] = None,
    names: Annotated[list[str] | None, typer.Argument()] = None,
    filename: Annotated[list[str] | None, typer.Option("-f", "--filename")] = None,
    recursive: Annotated[bool, typer.Option("-R", "--recursive")] = False,
    wait: Annotated[bool, typer.Option("--wait/--no-wait")] = True,
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds to wait.")] = 60.0,
    ignore_not_found: Annotated[bool, typer.Option("--ignore-not-found")] = False,
) -> None:
    """Delete objects by kind and name, or those in manifests."""
    opts: Options = ctx.obj
    client = opts.client()
    ns = opts.default_namespace()
    targets: list[tuple[type[Resource], str, str]] = []
    if filename:
        for m in load(filename, recursive):
            targets.append((m.cls, m.name, m.body.get("metadata", {}).get("namespace") or ns))
    elif kind and names:
        cls = resolve(kind)
        targets = [(cls, n, ns) for n in names]
    else:
        raise CLIError("give KIND NAME... or -f FILE")
    for cls, name, namespace in targets:
        info = cls.kind_info
        res = resource_class(cls)
        where = namespace if info.namespaced else None
        try:
            client.delete(res, name, namespace=where)
        except ApiError as err:
            if err.status.code == 404 and ignore_not_found:
                continue
            raise
        if wait:
            _wait_gone(client, res, name, where, timeout)
        prefix = f"{info.singular}.{info.group}" if info.group else info.singular
        print(f'{prefix} "{name}" deleted')
