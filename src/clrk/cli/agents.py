"""`clrk agents`: TaskAgents and DaemonAgents together (list, get, invocations), and
the agent commands that are also top-level (run-task, logs, traces)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

import typer

from clrk.api.agent_state import agent_state
from clrk.api.agents import TaskAgent
from clrk.api.columns import human_age, jsonpath
from clrk.api.invocation import Invocation
from clrk.api.revision import AgentSandboxRevision
from clrk.cli import agent_logs, output, run_task
from clrk.cli.agent_api import API, KINDS, AgentKind, fail, find_agent, http
from clrk.cli.context import Options
from clrk.client import resource_class, to_dict
from clrk.controllers.revisions import LABEL_AGENT, LABEL_KIND

app = typer.Typer(help="Inspect and run agents.", no_args_is_help=True)
RECENT = 5  # invocations `clrk agents get` shows

AllNamespacesOpt = Annotated[bool, typer.Option(
    "-A", "--all-namespaces", help="Agents of every namespace.")]


@app.command("list")
def list_(ctx: typer.Context, all_namespaces: AllNamespacesOpt = False,
          output_format: output.OutputOpt = None,
          show_managed_fields: output.ShowManagedFieldsOpt = False) -> None:
    """List every TaskAgent and DaemonAgent."""
    opts: Options = ctx.obj
    fmt = output.output_format(output_format)
    client = opts.client()
    ns = "*" if all_namespaces else opts.default_namespace()
    found = [(cls, to_dict(o)) for cls in KINDS
             for o in client.list(resource_class(cls), namespace=ns)]
    if fmt is not None:
        print(output.dump([d for _, d in found], fmt, single=False,
                          show_managed_fields=show_managed_fields), end="")
        return
    body: list[list[str]] = []
    for cls, d in found:
        md = d["metadata"]
        body.append(([md.get("namespace", "")] if all_namespaces else []) + [
            cls.kind_info.kind, md["name"], d["spec"].get("workerPoolRef", ""),
            str(jsonpath(d, ".spec.template.spec.image") or ""),
            str(jsonpath(d, ".status.servingRevisionName") or "<none>")
            + (" (pinned)" if d["spec"].get("pinnedRevisionName") else ""),
            agent_state(d).summary(), human_age(md.get("creationTimestamp", "")),
        ])
    if not body:
        print("No agents found.")
        return
    header = (["NAMESPACE"] if all_namespaces else []) + [
        "KIND", "NAME", "POOL", "IMAGE", "REVISION", "STATUS", "AGE"]
    output.print_table(header, body)


def invocations_of(opts: Options, cls: AgentKind, obj: dict[str, Any]) -> list[dict[str, Any]]:
    """The agent's Invocations, oldest first."""
    name = obj["metadata"]["name"]
    items = [to_dict(o) for o in opts.client().list(
        resource_class(Invocation), namespace=obj["metadata"]["namespace"],
        labels={"clrk.apoxy.dev/agent": name,
                "clrk.apoxy.dev/agent-kind": cls.kind_info.kind})]
    items.sort(key=lambda o: (o["metadata"].get("creationTimestamp", ""),
                              int(o["metadata"].get("resourceVersion") or 0)))
    return items


@app.command("get")
def get(ctx: typer.Context,
        name: Annotated[str, typer.Argument(metavar="NAME", help="The agent.")],
        output_format: output.OutputOpt = None,
        show_managed_fields: output.ShowManagedFieldsOpt = False) -> None:
    """Show one agent: phase and why, spec, conditions, revisions, recent invocations."""
    opts: Options = ctx.obj
    fmt = output.output_format(output_format)
    cls, obj = find_agent(opts, name)
    if fmt is not None:
        print(output.dump([obj], fmt, single=True,
                          show_managed_fields=show_managed_fields), end="")
        return
    spec = obj["spec"]
    md = obj["metadata"]
    status = obj.get("status") or {}
    state = agent_state(obj)
    print(f"{cls.kind_info.kind} {md['namespace']}/{md['name']}")
    print(f"  phase:       {state.phase}")
    if state.reason:
        print(f"  reason:      {state.reason}")
    if state.message:
        print(f"  message:     {state.message}")
    print(f"  image:       {jsonpath(obj, '.spec.template.spec.image')}")
    print(f"  pool:        {spec.get('workerPoolRef')}")
    if cls is TaskAgent:
        print(f"  timeout:     {spec.get('timeout')}")
        if spec.get("schedule"):
            print(f"  schedule:    {spec['schedule']}")
    else:
        print(f"  restart:     {spec.get('restartPolicy')}")
        if status.get("phase"):
            where = f", on {status['worker']}" if status.get("worker") else ""
            print(f"  process:     {status['phase']} (restarts "
                  f"{status.get('restartCount') or 0}{where})")
    print(f"  generation:  {md.get('generation')} (observed {status.get('observedGeneration')})")
    print(f"  revision:    {status.get('servingRevisionName') or '<none>'}"
          + (f" (pinned; the latest is {status.get('latestCreatedRevisionName')})"
             if spec.get("pinnedRevisionName") else ""))
    print("  conditions:")
    for c in status.get("conditions") or []:
        print(f"    {c['type']:<18} {c['status']:<6} {c.get('reason', '')}: "
              f"{c.get('message', '')}")
    revs = [to_dict(r) for r in opts.client().list(
        resource_class(AgentSandboxRevision), namespace=md["namespace"],
        labels={LABEL_AGENT: md["name"], LABEL_KIND: cls.kind_info.kind})]
    print("  revisions:")
    for r in sorted(revs, key=lambda r: r["spec"]["generation"], reverse=True):
        print(f"    {r['metadata']['name']}  {r['spec']['template']['spec']['image']}  "
              f"{human_age(r['metadata'].get('creationTimestamp', ''))}")
    usage = _usage(opts, cls, obj)
    totals = usage["totals"]
    print(f"  last 24 h:   {totals['invocations']} invocations ({totals['failed']} failed), "
          f"{totals['inputTokens']} in / {totals['outputTokens']} out tokens, "
          f"{_cost(totals['costUSD'], totals['unpricedCalls'])}, "
          f"{totals['denied']} denied egress")
    costs = {i["name"]: i for i in usage["invocations"]}
    recent = invocations_of(opts, cls, obj)[-RECENT:][::-1]
    print("  recent invocations:" if recent else "  recent invocations: none")
    if recent:
        table = [["NAME", "PHASE", "STARTED", "DURATION", "TOKENS", "COST"]] + [
            [o["metadata"]["name"], str((o.get("status") or {}).get("phase", "")),
             _started(o), _duration(o.get("status") or {}) or "-",
             *_invocation_usage(costs.get(o["metadata"]["name"]))] for o in recent]
        widths = output.widths(table[0], table[1:])
        for line in table:
            print("    " + output.format_row(line, widths))


def _usage(opts: Options, cls: AgentKind, obj: dict[str, Any]) -> dict[str, Any]:
    """The agent's ``usage`` subresource: its last 24 h, and its newest invocations'
    tokens and cost."""
    md = obj["metadata"]
    path = f"{API}/namespaces/{md['namespace']}/{cls.kind_info.plural}/{md['name']}/usage"
    with http(opts, 30) as (client, server):
        r = client.get(server + path, params={"window": "24h", "limit": RECENT})
        if r.status_code != 200:
            fail(r)
    found: dict[str, Any] = r.json()
    return found


def _cost(usd: str, unpriced: int) -> str:
    """A cost as the CLI shows it: unpriced calls are said, never counted as free."""
    if unpriced and usd == "0":
        return f"unpriced ({unpriced} call(s))"
    if unpriced:
        return f"${usd} + {unpriced} unpriced call(s)"
    return f"${usd}"


def _invocation_usage(u: dict[str, Any] | None) -> list[str]:
    if u is None:  # running, or its calls are not recorded yet
        return ["-", "-"]
    return [f"{u['inputTokens']}/{u['outputTokens']}", _cost(u["costUSD"], u["unpricedCalls"])]


@app.command("invocations")
def invocations(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(metavar="NAME", help="The agent.")],
    limit: Annotated[int, typer.Option("--limit", metavar="N",
                                       help="Newest N (0: all).")] = 20,
    output_format: output.OutputOpt = None,
    show_managed_fields: output.ShowManagedFieldsOpt = False,
) -> None:
    """List an agent's invocations, newest last."""
    opts: Options = ctx.obj
    fmt = output.output_format(output_format)
    cls, obj = find_agent(opts, name)
    items = invocations_of(opts, cls, obj)
    if limit:
        items = items[-limit:]
    if fmt is not None:
        print(output.dump(items, fmt, single=False,
                          show_managed_fields=show_managed_fields), end="")
        return
    if not items:
        print(f"No invocations of {name} yet.")
        return
    rows = []
    for o in items:
        st = o.get("status") or {}
        rows.append([o["metadata"]["name"], st.get("phase", ""), o["spec"].get("trigger") or "",
                     "" if st.get("exitCode") is None else str(st["exitCode"]),
                     _duration(st), human_age(o["metadata"].get("creationTimestamp", "")),
                     (st.get("reason") or "")[:80]])
    output.print_table(["NAME", "PHASE", "TRIGGER", "EXIT", "DURATION", "AGE", "REASON"], rows)


def _started(inv: dict[str, Any]) -> str:
    when = (inv.get("status") or {}).get("startTime") or inv["metadata"].get(
        "creationTimestamp", "")
    return f"{human_age(when)} ago" if when else "-"


def _duration(status: dict[str, Any]) -> str:
    if not status.get("startTime") or not status.get("completionTime"):
        return ""
    start = dt.datetime.fromisoformat(status["startTime"].replace("Z", "+00:00"))
    end = dt.datetime.fromisoformat(status["completionTime"].replace("Z", "+00:00"))
    return f"{(end - start).total_seconds():.2f}s"


app.command("run-task")(run_task.run_task)
app.command("logs")(agent_logs.logs)
app.command("traces")(agent_logs.traces)
