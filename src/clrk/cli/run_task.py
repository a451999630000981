"""`clrk run-task` (also `clrk agents run-task`): invoke a TaskAgent once and stream
its stdout, showing the image pull first if a worker is still pulling it."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from lightkube import ApiError
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

from clrk.api.agents import TaskAgent
from clrk.api.revision import AgentSandboxRevision
from clrk.api.workerpool import WorkerPool
from clrk.cli.agent_api import API, http
from clrk.cli.context import Options
from clrk.cli.errors import CLIError
from clrk.client import get_or_none_sync, resource_class, to_dict
from clrk.controllers import revisions

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


def run_task(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(metavar="NAME", help="The TaskAgent.")],
    input_: Annotated[str, typer.Option("-i", "--input", metavar="DATA",
                                        help="JSON, @file or - for stdin.")] = "{}",
    header: Annotated[list[str] | None, typer.Option(
        "-H", "--header", metavar="KEY=VALUE", help="An HTTP header for the agent.")] = None,
    timeout: Annotated[float, typer.Option("--timeout", metavar="SECONDS",
                                           help="Seconds to wait.")] = 600.0,
    content_type: Annotated[str, typer.Option("--content-type", metavar="TYPE",
                                              help="Content-Type of the input.")
                            ] = "application/json",
) -> None:
    """Invoke a TaskAgent once and print its stdout.

    Exit 0 Succeeded, 1 Failed, 124 Timeout, 77 Rejected."""
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
    with http(opts, timeout) as (client, server), \
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
