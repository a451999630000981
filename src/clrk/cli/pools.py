"""`clrk pools`: WorkerPools."""

from __future__ import annotations

from typing import Annotated

import typer

from clrk.api.workerpool import WorkerPool
from clrk.cli import output
from clrk.cli.context import Options
from clrk.client import resource_class, to_dict

app = typer.Typer(help="Inspect worker pools.", no_args_is_help=True)


@app.command("list")
def list_(ctx: typer.Context, output_format: output.OutputOpt = None,
          show_managed_fields: output.ShowManagedFieldsOpt = False) -> None:
    """List WorkerPools."""
    opts: Options = ctx.obj
    fmt = output.output_format(output_format)
    objs = [to_dict(o) for o in opts.client().list(resource_class(WorkerPool),
                                                    namespace=opts.default_namespace())]
    if fmt is not None:
        print(output.dump(objs, fmt, single=False, show_managed_fields=show_managed_fields),
              end="")
        return
    if not objs:
        print("No worker pools found.")
        return
    header, body = output.rows(WorkerPool.kind_info, objs, wide=True, all_namespaces=False)
    output.print_table(header, body)


@app.command("get")
def get(ctx: typer.Context,
        name: Annotated[str, typer.Argument(metavar="NAME", help="The WorkerPool.")],
        output_format: output.OutputOpt = None,
        show_managed_fields: output.ShowManagedFieldsOpt = False) -> None:
    """Show one WorkerPool."""
    opts: Options = ctx.obj
    fmt = output.output_format(output_format)
    obj = to_dict(opts.client().get(resource_class(WorkerPool), name,
                                    namespace=opts.default_namespace()))
    if fmt is not None:
        print(output.dump([obj], fmt, single=True, show_managed_fields=show_managed_fields),
              end="")
        return
    header, body = output.rows(WorkerPool.kind_info, [obj], wide=True, all_namespaces=False)
    output.print_table(header, body)
    for c in (obj.get("status") or {}).get("conditions") or []:
        print(f"  {c['type']:<10} {c['status']:<6} {c.get('reason', '')}: "
              f"{c.get('message', '')}")
