"""`clrk pools`: WorkerPools."""

from __future__ import annotations

from typing import Annotated

import typer

from clrk.api.workerpool import WorkerPool
from clrk.cli import output
from clrk.cli.context import Options
from clrk.cli.errors import CLIError
from clrk.client import resource_class, to_dict

app = typer.Typer(help="Inspect worker pools.", no_args_is_help=True)


@app.command("list")
def list_(ctx: typer.Context) -> None:
    """List WorkerPools."""
    opts: Options = ctx.obj
    objs = [to_dict(o) for o in opts.client().list(resource_class(WorkerPool),
                                                    namespace=opts.default_namespace())]
    if not objs:
        print("No worker pools found.")
        return
    header, body = output.rows(WorkerPool.kind_info, objs, wide=True, all_namespaces=False)
    output.print_table(header, body)


@app.command("get")
def get(ctx: typer.Context, name: str,
        output_format: Annotated[str | None, typer.Option("-o", "--output")] = None) -> None:
    """Show one WorkerPool."""
    opts: Options = ctx.obj
    obj = to_dict(opts.client().get(resource_class(WorkerPool), name,
                                    namespace=opts.default_namespace()))
    if output_format in ("yaml", "json"):
        print(output.dump([obj], output_format, single=True), end="")
        return
    if output_format is not None:
        raise CLIError(f"unknown output format {output_format!r}: use yaml or json")
    header, body = output.rows(WorkerPool.kind_info, [obj], wide=True, all_namespaces=False)
    output.print_table(header, body)
    for c in (obj.get("status") or {}).get("conditions") or []:
        print(f"  {c['type']:<10} {c['status']:<6} {c.get('reason', '')}: "
              f"{c.get('message', '')}")
