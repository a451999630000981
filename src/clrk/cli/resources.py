"""`clrk apply` and `clrk delete`: generic verbs over every kind (`clrk get` is
``clrk.cli.get``)."""

from __future__ import annotations

import sys
import time
from typing import Annotated, Any

import typer
from lightkube import ApiError, Client

from clrk.api.base import Resource
from clrk.cli.context import Options
from clrk.cli.errors import CLIError
from clrk.cli.manifests import Manifest, apply_request, load
from clrk.cli.output import qualified
from clrk.cli.targets import parse
from clrk.client import resource_class, to_dict


def apply_manifest(client: Client, m: Manifest, namespace: str, force: bool,
                   dry_run: bool = False, validate: str = "Strict") -> dict[str, Any]:
    return to_dict(client._client.request(**apply_request(m, namespace, force, dry_run,
                                                          validate)))


def apply(
    ctx: typer.Context,
    filename: Annotated[list[str], typer.Option("-f", "--filename", metavar="PATH",
                                                help="File, directory or - for stdin.")],
    recursive: Annotated[bool, typer.Option(
        "-R", "--recursive", help="Read the directories given with -f recursively.")
    ] = False,
    force_conflicts: Annotated[bool, typer.Option(
        "--force-conflicts", help="Take over fields another manager owns.")] = False,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="Have the server check the objects without storing them.")
    ] = False,
    validate: Annotated[str, typer.Option(
        "--validate", metavar="MODE",
        help="Unknown or duplicate fields: strict refuses the object, warn applies it "
             "without them and prints a warning, ignore drops them silently.")
    ] = "strict",
) -> None:
    """Server-side apply manifests (field manager `clrk`)."""
    modes = {"strict": "Strict", "warn": "Warn", "ignore": "Ignore", "true": "Strict",
             "false": "Ignore"}
    if validate.lower() not in modes:
        raise CLIError(f"--validate {validate}: expected strict, warn or ignore")
    opts: Options = ctx.obj
    manifests = load(filename, recursive)
    client = opts.client()
    ns = opts.default_namespace()
    failed = 0
    for m in manifests:  # every document, each with its own outcome
        try:
            apply_manifest(client, m, ns, force_conflicts, dry_run, modes[validate.lower()])
        except ApiError as err:
            message = f"{m.source}: {m.label}: {err.status.message}"
            if err.status.code == 409 and "conflict" in (err.status.message or ""):
                message += " (--force-conflicts takes those fields over)"
            if len(manifests) == 1:
                raise CLIError(message) from None
            print(f"error: {message}", file=sys.stderr)
            failed += 1
            continue
        suffix = " (dry run)" if dry_run else ""
        print(f"{m.label} serverside-applied{suffix}")
    if failed:
        raise CLIError(f"{failed} of {len(manifests)} objects were not applied")


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
    args: Annotated[list[str] | None, typer.Argument(
        metavar="KIND[,KIND] [NAME]",
        help="Kinds and names, as for clrk get (also KIND/NAME).", show_default=False)
    ] = None,
    filename: Annotated[list[str] | None, typer.Option(
        "-f", "--filename", metavar="PATH", help="Delete the objects of these manifests.")
    ] = None,
    recursive: Annotated[bool, typer.Option(
        "-R", "--recursive", help="Read the directories given with -f recursively.")
    ] = False,
    all_: Annotated[bool, typer.Option(
        "--all", help="Every object of the kinds, in the namespace.")] = False,
    wait: Annotated[bool, typer.Option(
        "--wait/--no-wait", help="Wait until the objects are gone (finalizers run).")
    ] = True,
    timeout: Annotated[float, typer.Option("--timeout", metavar="SECONDS",
                                           help="Seconds to wait.")] = 60.0,
    ignore_not_found: Annotated[bool, typer.Option(
        "--ignore-not-found", help="A missing object is not an error.")] = False,
) -> None:
    """Delete objects by kind and name, all of some kinds (--all), or a manifest's (-f)."""
    opts: Options = ctx.obj
    targets = _targets(opts, args or [], filename, recursive, all_)
    client = opts.client()
    if not targets:
        print(f"No resources found in {opts.default_namespace()} namespace.", file=sys.stderr)
    deleted = []
    for cls, name, namespace in targets:  # all at once, then (as kubectl) the wait
        info = cls.kind_info
        res = resource_class(cls)
        where = namespace if info.namespaced else None
        try:
            client.delete(res, name, namespace=where)
        except ApiError as err:
            if err.status.code == 404 and ignore_not_found:
                continue
            raise
        print(f'{qualified(info)} "{name}" deleted', flush=True)
        deleted.append((res, name, where))
    deadline = time.monotonic() + timeout
    for res, name, where in deleted if wait else []:
        _wait_gone(client, res, name, where, max(0.5, deadline - time.monotonic()))


def _targets(opts: Options, args: list[str], filename: list[str] | None, recursive: bool,
             all_: bool) -> list[tuple[type[Resource], str, str]]:
    """(kind, name, namespace) of each object to delete."""
    ns = opts.default_namespace()
    if filename:
        if args or all_:
            raise CLIError("give KIND NAME..., KIND --all or -f FILE, not several of them")
        return [(m.cls, m.name, m.body.get("metadata", {}).get("namespace") or ns)
                for m in load(filename, recursive)]
    if not args:
        raise CLIError("give KIND NAME..., KIND --all or -f FILE (nothing to delete)")
    selections = parse(args)
    named = any(s.names for s in selections)
    if all_ and named:
        raise CLIError("--all deletes every object of the kinds: give no names with it")
    if not all_ and not named:
        raise CLIError(f"give the names to delete, or --all for every {args[0]} in the "
                       f"namespace")
    if all_:
        client = opts.client()
        out = []
        for s in selections:
            info = s.cls.kind_info
            for o in client.list(resource_class(s.cls),
                                 namespace=ns if info.namespaced else None):
                out.append((s.cls, to_dict(o)["metadata"]["name"], ns))
        return out
    return [(s.cls, n, ns) for s in selections for n in s.names]
