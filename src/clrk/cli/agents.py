"""`clrk agents`: TaskAgents and DaemonAgents together."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from lightkube import ApiError

from clrk.api.agents import DaemonAgent, TaskAgent
from clrk.api.columns import human_age, jsonpath
from clrk.api.revision import AgentSandboxRevision
from clrk.cli import output
from clrk.cli.context import Options
from clrk.cli.errors import CLIError
from clrk.client import resource_class, to_dict
from clrk.controllers.revisions import LABEL_AGENT, LABEL_KIND

app = typer.Typer(help="Inspect agents.", no_args_is_help=True)
KINDS = (TaskAgent, DaemonAgent)


def _summary(obj: dict[str, Any]) -> str:
    conds = {c.get("type"): c for c in (obj.get("status") or {}).get("conditions") or []}
    if not conds:
        return "Pending"
    bad = [t for t, c in conds.items() if c.get("status") != "True"]
    return "Ready" if not bad else "Not " + ",".join(bad)


@app.command("list")
def list_(ctx: typer.Context,
          all_namespaces: Annotated[bool, typer.Option("-A", "--all-namespaces")] = False
          ) -> None:
    """List every TaskAgent and DaemonAgent."""
    opts: Options = ctx.obj
    client = opts.client()
    ns = "*" if all_namespaces else opts.default_namespace()
    body: list[list[str]] = []
    for cls in KINDS:
        for o in client.list(resource_class(cls), namespace=ns):
            d = to_dict(o)
            md = d["metadata"]
            body.append(([md.get("namespace", "")] if all_namespaces else []) + [
                cls.kind_info.kind, md["name"], d["spec"].get("workerPoolRef", ""),
                str(jsonpath(d, ".spec.template.spec.image") or ""),
                str(jsonpath(d, ".status.latestCreatedRevisionName") or "<none>"),
                _summary(d), human_age(md.get("creationTimestamp", "")),
            ])
    if not body:
        print("No agents found.")
        return
    header = (["NAMESPACE"] if all_namespaces else []) + [
        "KIND", "NAME", "POOL", "IMAGE", "REVISION", "STATUS", "AGE"]
    output.print_table(header, body)


def find_agent(opts: Options, name: str) -> tuple[type[TaskAgent] | type[DaemonAgent],
                                                   dict[str, Any]]:
    client = opts.client()
    ns = opts.default_namespace()
    for cls in KINDS:
        try:
            return cls, to_dict(client.get(resource_class(cls), name, namespace=ns))
        except ApiError as err:
            if err.status.code != 404:
                raise
    raise CLIError(f'no TaskAgent or DaemonAgent named "{name}" in namespace {ns}')


@app.command("get")
def get(ctx: typer.Context, name: str,
        output_format: Annotated[str | None, typer.Option("-o", "--output")] = None) -> None:
    """Show one agent: spec summary, conditions and revisions."""
    opts: Options = ctx.obj
    cls, obj = find_agent(opts, name)
    if output_format in ("yaml", "json"):
        print(output.dump([obj], output_format, single=True), end="")
        return
    if output_format is not None:
        raise CLIError(f"unknown output format {output_format!r}: use yaml or json")
    spec = obj["spec"]
    md = obj["metadata"]
    status = obj.get("status") or {}
    print(f"{cls.kind_info.kind} {md['namespace']}/{md['name']}")
    print(f"  image:       {jsonpath(obj, '.spec.template.spec.image')}")
    print(f"  pool:        {spec.get('workerPoolRef')}")
    if cls is TaskAgent:
        print(f"  timeout:     {spec.get('timeout')}")
        if spec.get("schedule"):
            print(f"  schedule:    {spec['schedule']}")
    else:
        print(f"  restart:     {spec.get('restartPolicy')}")
    print(f"  generation:  {md.get('generation')} (observed {status.get('observedGeneration')})")
    print(f"  revision:    {status.get('latestCreatedRevisionName', '<none>')}")
    print("  conditions:")
    for c in status.get("conditions") or []:
        print(f"    {c['type']:<18} {c['status']:<6} {c.get('reason', '')}: "
              f"{c.get('message', '')}")
    client = opts.client()
    revs = [to_dict(r) for r in client.list(
        resource_class(AgentSandboxRevision), namespace=md["namespace"],
        labels={LABEL_AGENT: md["name"], LABEL_KIND: cls.kind_info.kind})]
    print("  revisions:")
    for r in sorted(revs, key=lambda r: r["spec"]["generation"], reverse=True):
        print(f"    {r['metadata']['name']}  {r['spec']['template']['spec']['image']}  "
              f"{human_age(r['metadata'].get('creationTimestamp', ''))}")
