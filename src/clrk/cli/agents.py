"""`clrk agents`: TaskAgents and DaemonAgents together."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from lightkube import ApiError
from lightkube.config.client_adapter import Client as httpx_client
from lightkube.config.client_adapter import ConnectionParams
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

from clrk.api.agents import DaemonAgent, TaskAgent
from clrk.api.columns import human_age, jsonpath
from clrk.api.invocation import Invocation
from clrk.api.revision import AgentSandboxRevision
from clrk.api.workerpool import WorkerPool
from clrk.cli import output
from clrk.cli.context import Options
from clrk.cli.errors import CLIError
from clrk.client import get_or_none_sync, resource_class, to_dict
from clrk.controllers import revisions
from clrk.controllers.revisions import LABEL_AGENT, LABEL_KIND

app = typer.Typer(help="Inspect agents.", no_args_is_help=True)
KINDS = (TaskAgent, DaemonAgent)


def _summary(obj: dict[str, Any]) -> str:
    conds = {c.get("type"): c for c in (obj.get("status") or {}).get("conditions") or []}
    if not conds:
        return "Pending"
    bad = [t for t, c in conds.items() if c.get("status") != "True"]
    failed = (conds.get("ImageReady") or {}).get("reason")
    if failed not in (None, "ImagePulled", "Pulling"):
        return str(failed)  # the image cannot be pulled: nothing runs until it can
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
                str(jsonpath(d, ".status.servingRevisionName") or "<none>")
                + (" (pinned)" if d["spec"].get("pinnedRevisionName") else ""),
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
    print(f"  revision:    {status.get('servingRevisionName') or '<none>'}"
          + (f" (pinned; the latest is {status.get('latestCreatedRevisionName')})"
             if spec.get("pinnedRevisionName") else ""))
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


EXIT_CODES = {200: 0, 504: 124, 429: 77, 503: 77, 413: 77}


def _input(value: str) -> bytes:
    if value == "-":
        return sys.stdin.buffer.read()
    if value.startswith("@"):
        try:
            return Path(value[1:]).read_bytes()
        except OSError as err:
            raise CLIError(f"-i {value}: {err.strerror}") from None
    return value.encode()


@app.command("run-task")
def run_task(
    ctx: typer.Context,
    name: str,
    input_: Annotated[str, typer.Option("-i", "--input", help="JSON, @file or - for stdin.")
                      ] = "{}",
    header: Annotated[list[str] | None, typer.Option("-H", "--header", help="k=v")] = None,
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds to wait.")] = 600.0,
    content_type: Annotated[str, typer.Option("--content-type")] = "application/json",
) -> None:
    """Invoke a TaskAgent once; print its stdout. Exit 0 Succeeded, 1 Failed, 124 Timeout,
    77 Rejected."""
    opts: Options = ctx.obj
    body = _input(input_)
    _wait_for_pull(opts, name, timeout)
    headers = {"Content-Type": content_type, "X-Clrk-Trigger": "cli"}
    for item in header or []:
        if "=" not in item:
            raise CLIError(f"-H expects key=value, got {item!r}")
        k, v = item.split("=", 1)
        headers[k] = v
    ns = opts.default_namespace()
    with _http(opts, timeout) as (client, server), \
            client.stream("POST", f"{server}{API}/namespaces/{ns}/taskagents/{name}/invoke",
                          content=body, headers=headers) as r:
        if r.status_code >= 400 and r.headers.get("content-type", "").startswith(
                "application/json") and r.status_code not in (500,):
            r.read()
            try:
                message = r.json().get("message", r.text)
            except ValueError:
                message = r.text
            print(f"error: {message}", file=sys.stderr)
            raise SystemExit(EXIT_CODES.get(r.status_code, 1))
        for chunk in r.iter_bytes():
            sys.stdout.buffer.write(chunk)
            sys.stdout.buffer.flush()
        if r.status_code != 200:
            reason = r.headers.get("x-clrk-reason", "")
            code = r.headers.get("x-clrk-exit-code")
            detail = f" (exit code {code})" if code else ""
            print(f"error: the execution ended with HTTP {r.status_code}{detail}"
                  f"{': ' + reason if reason else ''}", file=sys.stderr)
        raise SystemExit(EXIT_CODES.get(r.status_code, 1))


API = "/apis/clrk.apoxy.dev/v1alpha1"


def _ready(rev: dict[str, Any]) -> bool:
    conds = (rev.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" for c in conds)


def _wait_for_pull(opts: Options, name: str, timeout: float) -> None:
    """While a worker is still pulling the agent's image, show the pull as a progress bar
    (on stderr) instead of a silent wait; the invocation itself would wait for it too."""
    client = opts.client()
    ns = opts.default_namespace()
    try:
        agent = to_dict(client.get(resource_class(TaskAgent), name, namespace=ns))
    except ApiError:
        return  # the invocation reports a missing agent
    pool = get_or_none_sync(client, resource_class(WorkerPool),
                            (agent.get("spec") or {}).get("workerPoolRef") or "default", ns)
    if not ((pool or {}).get("status") or {}).get("readyReplicas"):
        return  # no worker to pull it: the invocation says so at once
    rev_name = revisions.wanted(agent)
    res = resource_class(AgentSandboxRevision)
    rev = get_or_none_sync(client, res, rev_name, ns) if rev_name else None
    if rev is None or _ready(rev):
        return
    image = rev["spec"]["template"]["spec"]["image"]
    console = Console(stderr=True)
    columns = (TextColumn("pulling {task.description}"), BarColumn(), DownloadColumn(),
               TransferSpeedColumn())
    with Progress(*columns, console=console, transient=False) as bar:
        task = bar.add_task(image, total=None)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pull = (rev.get("status") or {}).get("imagePull") or {}
            if pull.get("totalBytes"):
                bar.update(task, total=pull["totalBytes"], completed=pull["completedBytes"])
            if _ready(rev):
                if pull.get("done") and pull.get("totalBytes"):
                    bar.update(task, completed=pull["totalBytes"])
                return
            time.sleep(0.25)
            rev = get_or_none_sync(client, res, rev_name or "", ns) or rev


@contextlib.contextmanager
def _http(opts: Options, read_timeout: float | None) -> Iterator[tuple[httpx.Client, str]]:
    """A client for the API server of the current context (for non-object endpoints),
    with whatever credentials the kubeconfig holds (token, client certificate, exec)."""
    config = opts.kube_config().get(context_name=opts.context)
    if config is None:
        raise CLIError("the kubeconfig has no current context: pass --context")
    params = ConnectionParams(timeout=httpx.Timeout(10, read=read_timeout))
    with httpx_client(config, params) as client:
        yield client, ""


def _fail(r: httpx.Response) -> None:
    r.read()
    try:
        message = r.json().get("message", r.text)
    except ValueError:
        message = r.text
    raise CLIError(message)


@app.command("invocations")
def invocations(
    ctx: typer.Context, name: str,
    limit: Annotated[int, typer.Option("--limit", help="Newest N (0: all).")] = 20,
    output_format: Annotated[str | None, typer.Option("-o", "--output")] = None,
) -> None:
    """List an agent's invocations, newest last."""
    opts: Options = ctx.obj
    cls, obj = find_agent(opts, name)
    items = [to_dict(o) for o in opts.client().list(
        resource_class(Invocation), namespace=obj["metadata"]["namespace"],
        labels={"clrk.apoxy.dev/agent": name,
                "clrk.apoxy.dev/agent-kind": cls.kind_info.kind})]
    items.sort(key=lambda o: (o["metadata"].get("creationTimestamp", ""),
                              int(o["metadata"].get("resourceVersion") or 0)))
    if limit:
        items = items[-limit:]
    if output_format in ("yaml", "json"):
        print(output.dump(items, output_format, single=False), end="")
        return
    if output_format is not None:
        raise CLIError(f"unknown output format {output_format!r}: use yaml or json")
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


def _duration(status: dict[str, Any]) -> str:
    if not status.get("startTime") or not status.get("completionTime"):
        return ""
    start = dt.datetime.fromisoformat(status["startTime"].replace("Z", "+00:00"))
    end = dt.datetime.fromisoformat(status["completionTime"].replace("Z", "+00:00"))
    return f"{(end - start).total_seconds():.2f}s"


@app.command("logs")
def logs(
    ctx: typer.Context,
    target: Annotated[str, typer.Argument(metavar="NAME[/INVOCATION]")],
    follow: Annotated[bool, typer.Option("-f", "--follow")] = False,
    tail: Annotated[int, typer.Option("--tail", help="The last N lines (0: all).")] = 0,
    iostream: Annotated[str | None, typer.Option("--iostream", help="stdout or stderr.")
                        ] = None,
    since: Annotated[str | None, typer.Option("--since", help="5m, 1h or RFC 3339.")] = None,
    timestamps: Annotated[bool, typer.Option("--timestamps")] = False,
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
    with _http(opts, None if follow else 60) as (client, server):
        if not follow:
            r = client.get(server + path, params=params)
            if r.status_code != 200:
                _fail(r)
            for item in r.json()["items"]:
                _print_line(item, timestamps, prefix)
            return
        with client.stream("GET", server + path, params=params) as r:
            if r.status_code != 200:
                _fail(r)
            for line in r.iter_lines():
                if line:
                    _print_line(json.loads(line), timestamps, prefix)


@app.command("traces")
def traces(
    ctx: typer.Context,
    target: Annotated[str, typer.Argument(metavar="NAME[/INVOCATION]")],
    output_format: Annotated[str | None, typer.Option("-o", "--output")] = None,
) -> None:
    """Show an agent's executions and the calls each made, as a tree per invocation."""
    opts: Options = ctx.obj
    name, _, invocation = target.partition("/")
    cls, obj = find_agent(opts, name)
    path = (f"{API}/namespaces/{obj['metadata']['namespace']}/"
            f"{cls.kind_info.plural}/{name}/traces")
    with _http(opts, 60) as (client, server):
        r = client.get(server + path, params={"invocation": invocation} if invocation else {})
        if r.status_code != 200:
            _fail(r)
    items = r.json()["items"]
    if output_format == "json":
        print(json.dumps(items, indent=2))
        return
    if output_format is not None:
        raise CLIError(f"unknown output format {output_format!r}: use json")
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
        for child in children.get(root["spanId"], []):
            print("  └ " + _call_line(child))


def _call_line(span: dict[str, Any]) -> str:
    a = span["attributes"]
    return (f"{span['name']}  {a.get('clrk.decision', span['status'])}  "
            f"{span['durationMs']} ms  {a.get('clrk.bytes.sent', '?')} B out / "
            f"{a.get('clrk.bytes.received', '?')} B in")


def _print_line(item: dict[str, str], timestamps: bool, prefix: bool) -> None:
    head = ""
    if timestamps:
        head += item["timestamp"] + " "
    if prefix:
        head += f"[{item['invocation']} {item['stream']}] "
    print(head + item["message"], flush=True)


