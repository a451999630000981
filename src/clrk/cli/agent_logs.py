"""`clrk logs` and `clrk traces` (also under `clrk agents`): an agent's output lines and
the spans of its executions, from the API server's ``logs`` and ``traces`` subresources."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from clrk.cli import output
from clrk.cli.agent_api import API, fail, find_agent, http
from clrk.cli.context import Options
from clrk.cli.errors import CLIError

TargetArg = Annotated[str, typer.Argument(
    metavar="NAME[/INVOCATION]", help="The agent, and optionally one of its invocations.")]


def logs(
    ctx: typer.Context,
    target: TargetArg,
    follow: Annotated[bool, typer.Option("-f", "--follow",
                                         help="Keep printing new lines as they come.")
                      ] = False,
    tail: Annotated[int, typer.Option("--tail", metavar="N",
                                      help="The last N lines (0: all).")] = 0,
    iostream: Annotated[str | None, typer.Option("--iostream", metavar="STREAM",
                                                 help="stdout or stderr.")] = None,
    since: Annotated[str | None, typer.Option("--since", metavar="WHEN",
                                              help="5m, 1h or RFC 3339.")] = None,
    timestamps: Annotated[bool, typer.Option("--timestamps",
                                             help="Start each line with its time.")] = False,
    prefix: Annotated[bool, typer.Option("--prefix", help="Show invocation and stream.")
                      ] = False,
) -> None:
    """Print an agent's stdout/stderr lines (all invocations, or one)."""
    opts: Options = ctx.obj
    name, _, invocation = target.partition("/")
    if iostream not in (None, "stdout", "stderr"):
        raise CLIError(f"--iostream {iostream!r}: use stdout or stderr")
    cls, obj = find_agent(opts, name)
    params: dict[str, str] = {}
    for key, value in (("invocation", invocation), ("stream", iostream), ("since", since),
                       ("tailLines", str(tail) if tail else ""),
                       ("follow", "true" if follow else "")):
        if value:
            params[key] = value
    path = (f"{API}/namespaces/{obj['metadata']['namespace']}/"
            f"{cls.kind_info.plural}/{name}/logs")
    with http(opts, None if follow else 60) as (client, server):
        if not follow:
            r = client.get(server + path, params=params)
            if r.status_code != 200:
                fail(r)
            for item in r.json()["items"]:
                _print_line(item, timestamps, prefix)
            return
        with client.stream("GET", server + path, params=params) as r:
            if r.status_code != 200:
                fail(r)
            for line in r.iter_lines():
                if line:
                    _print_line(json.loads(line), timestamps, prefix)


def traces(
    ctx: typer.Context,
    target: TargetArg,
    output_format: output.OutputOpt = None,
) -> None:
    """Show an agent's executions and the calls each made, as a tree per invocation."""
    opts: Options = ctx.obj
    fmt = output.output_format(output_format)
    name, _, invocation = target.partition("/")
    cls, obj = find_agent(opts, name)
    path = (f"{API}/namespaces/{obj['metadata']['namespace']}/"
            f"{cls.kind_info.plural}/{name}/traces")
    with http(opts, 60) as (client, server):
        r = client.get(server + path, params={"invocation": invocation} if invocation else {})
        if r.status_code != 200:
            fail(r)
    items = r.json()["items"]
    if fmt is not None:
        print(output.dump_doc(items, fmt), end="")
        return
    # A root: no parent, or one not stored yet (a daemon's run ends its span when the
    # run ends; the calls it made meanwhile are shown on their own).
    ids = {i["spanId"] for i in items}
    roots = [i for i in items if i["parentSpanId"] not in ids]
    children: dict[str, list[dict[str, Any]]] = {}
    for item in items:
        if item["parentSpanId"] in ids:
            children.setdefault(item["parentSpanId"], []).append(item)
    if not items:
        print(f"No traces of {name} yet.")
    for root in roots:
        if root["parentSpanId"]:
            print(f"{root['startTime']}  {_call_line(root)}")
            continue
        attrs = root["attributes"]
        print(f"{root['startTime']}  {attrs.get('clrk.invocation', root['name'])}  "
              f"{attrs.get('clrk.invocation.phase', root['status'])}  {root['durationMs']} ms")
        _print_children(children, root["spanId"], 1, {root["spanId"]})


def _print_children(children: dict[str, list[dict[str, Any]]], span_id: str, depth: int,
                    seen: set[str]) -> None:
    """The spans under ``span_id``, nested: the agent's own spans have children."""
    for child in children.get(span_id, []):
        print("  " * depth + "└ " + _call_line(child))
        if child["spanId"] not in seen:
            _print_children(children, child["spanId"], depth + 1, seen | {child["spanId"]})


def _call_line(span: dict[str, Any]) -> str:
    a = span["attributes"]
    line = f"{span['name']}  {a.get('clrk.decision', span['status'])}  {span['durationMs']} ms"
    if "clrk.bytes.sent" in a or "clrk.bytes.received" in a:  # a connection or request
        line += (f"  {a.get('clrk.bytes.sent', '?')} B out / "
                 f"{a.get('clrk.bytes.received', '?')} B in")
    model = a.get("gen_ai.response.model") or a.get("gen_ai.request.model")
    if "gen_ai.usage.input_tokens" in a or "gen_ai.usage.output_tokens" in a:
        line += (f"  {model or '?'}  {a.get('gen_ai.usage.input_tokens', '?')} in / "
                 f"{a.get('gen_ai.usage.output_tokens', '?')} out tokens")
    if a.get("clrk.cost.priced") == "true":
        line += f"  ${a.get('clrk.cost.usd', '?')}"
    elif a.get("clrk.cost.priced") == "false":
        line += "  unpriced"
    return line


def _print_line(item: dict[str, str], timestamps: bool, prefix: bool) -> None:
    head = ""
    if timestamps:
        head += item["timestamp"] + " "
    if prefix:
        head += f"[{item['invocation']} {item['stream']}] "
    print(head + item["message"], flush=True)
