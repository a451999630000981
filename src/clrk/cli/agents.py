"""`clrk agents`: TaskAgents and DaemonAgents together."""

from __future__ import annotations

import os
import ssl
import sys
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from lightkube import ApiError

from clrk import kubeconfig
from clrk.api.agents import DaemonAgent, TaskAgent
from clrk.api.columns import human_age, jsonpath
from clrk.api.revision import AgentSandboxRevision
from clrk.cli import output
from clrk.cli.context import Options
from clrk.cli.errors import CLIError
from clrk.client import local_kubeconfig, resource_class, to_dict
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
    headers = {"Content-Type": content_type, "X-Clrk-Trigger": "cli"}
    for item in header or []:
        if "=" not in item:
            raise CLIError(f"-H expects key=value, got {item!r}")
        k, v = item.split("=", 1)
        headers[k] = v
    path = kubeconfig_path(opts)
    server, ca, token = kubeconfig.read(path, opts.context)
    ns = opts.default_namespace()
    url = (f"{server}/apis/clrk.apoxy.dev/v1alpha1/namespaces/{ns}/taskagents/{name}/invoke")
    ssl_ctx = ssl.create_default_context(cadata=ca.decode()) if ca else True
    with httpx.Client(verify=ssl_ctx, timeout=httpx.Timeout(10, read=timeout)) as client, \
            client.stream("POST", url, content=body,
                          headers={**headers, "Authorization": f"Bearer {token}"}) as r:
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


def kubeconfig_path(opts: Options) -> Path:
    path = opts.config_path()
    if path is not None:
        return path
    env = os.environ.get("KUBECONFIG")
    if env:
        return Path(env.split(os.pathsep)[0])
    default = Path.home() / ".kube" / "config"
    return default if default.exists() else local_kubeconfig()
