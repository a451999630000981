"""`clrk context list|use|current`: the contexts of the kubeconfig clrk reads (the one
--kubeconfig, CLRK_KUBECONFIG, KUBECONFIG or ~/.kube/config names, else `clrk dev`'s;
--local: `clrk dev`'s), as `kubectl config get-contexts|use-context|current-context`."""

from __future__ import annotations

from typing import Annotated

import typer

from clrk.cli import output
from clrk.cli.context import Options
from clrk.cli.errors import CLIError
from clrk.cli.kubeconfig_file import contexts, use_context

app = typer.Typer(help="List and switch kubeconfig contexts.", no_args_is_help=True)


@app.command("list")
def list_(ctx: typer.Context, output_format: Annotated[str | None, typer.Option(
        "-o", "--output", metavar="FORMAT", help="json, yaml or name.")] = None) -> None:
    """List the kubeconfig's contexts; * marks the current one."""
    opts: Options = ctx.obj
    fmt = output.output_format(output_format, ("json", "yaml", "name"))
    path = opts.kubeconfig_file()
    entries, current = contexts(path)
    if fmt == "name":
        for c in entries:
            print(c.name)
        return
    if fmt is not None:
        print(output.dump_doc({
            "kubeconfig": str(path), "currentContext": current,
            "contexts": [{"name": c.name, "cluster": c.cluster, "user": c.user,
                          "namespace": c.namespace, "current": c.name == current}
                         for c in entries]}, fmt), end="")
        return
    if not entries:
        print(f"No contexts in {path}.")
        return
    output.print_table(["CURRENT", "NAME", "CLUSTER", "AUTHINFO", "NAMESPACE"], [
        ["*" if c.name == current else "", c.name, c.cluster, c.user, c.namespace]
        for c in entries])


@app.command("use")
def use(ctx: typer.Context, name: Annotated[str, typer.Argument(
        metavar="NAME", help="The context to make current.")]) -> None:
    """Make NAME the current context, in the kubeconfig file itself."""
    opts: Options = ctx.obj
    use_context(opts.kubeconfig_file(), name)
    print(f'Switched to context "{name}".')


@app.command("current")
def current(ctx: typer.Context) -> None:
    """Print the current context."""
    opts: Options = ctx.obj
    path = opts.kubeconfig_file()
    _, name = contexts(path)
    if not name:
        raise CLIError(f"current-context is not set in {path}")
    print(name)
