"""`clrk dev status|logs|wait-ready|reload`: looking after a running `clrk dev` from
another terminal (or a script), through its control socket and its log files."""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

from clrk.cli.dev_components import Component, human_uptime
from clrk.cli.dev_control import NotRunning, call
from clrk.cli.errors import CLIError

DEV_LOG = "dev.log"
# The dev process's loggers, by the component they belong to (the rest: api-server).
_LOGGERS = (("clrk.controllers", "controller-manager"), ("clrk.dev.registry", "registry"),
            ("clrk.dev", "dev"))
_LOGGER = re.compile(r"^\S+ \S+ \w+ ([\w.]+): ")


def components(data_dir: Path) -> list[Component]:
    answer = call(data_dir, {"op": "status"})
    if "error" in answer:
        raise CLIError(str(answer["error"]))
    return [Component.from_json(c) for c in answer.get("components") or []]


def table(parts: list[Component]) -> str:
    rows = [("COMPONENT", "STATE", "READY", "PID", "UPTIME", "RESTARTS", "ADDRESS")]
    rows += [(c.name, c.state, "yes" if c.ready else "no", str(c.pid or "-"),
              human_uptime(c.uptime_seconds), str(c.restarts), c.address or "-")
             for c in parts]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("   ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip()
                     for r in rows)


def wait_ready(ctx: typer.Context, timeout: Annotated[float, typer.Option(
        "--timeout", metavar="SECONDS", help="Give up after this long (exit 1).")] = 120,
) -> None:
    """Wait until `clrk dev` and every component of it is ready."""
    data_dir: Path = ctx.obj.data_dir
    deadline = time.monotonic() + timeout
    waiting = "nothing answers yet"
    while time.monotonic() < deadline:
        try:
            parts = components(data_dir)
        except NotRunning:
            parts = []
        else:
            waiting = ", ".join(f"{c.name} ({c.state})" for c in parts if not c.ready)
            if parts and not waiting:
                print(f"clrk dev is ready ({len(parts)} components)")
                return
        time.sleep(0.5)
    raise CLIError(f"clrk dev (data dir {data_dir}) is not ready after {timeout:g}s: "
                   f"{waiting}")


def reload(ctx: typer.Context, component: Annotated[str, typer.Argument(
        help="worker-N, worker (every worker) or controller-manager.")]) -> None:
    """Restart one component of the running `clrk dev`, keeping every object."""
    try:
        answer = call(ctx.obj.data_dir, {"op": "reload", "component": component},
                      timeout=120)
    except NotRunning as err:
        raise CLIError(str(err)) from None
    if "error" in answer:
        raise CLIError(str(answer["error"]))
    print(f"{component} reloaded")


@dataclass
class _Source:
    prefix: str  # "" for dev.log: each line's logger says its component
    path: Path
    offset: int = 0
    rest: bytes = b""

    def label(self, line: str) -> str:
        if self.prefix:
            return self.prefix
        m = _LOGGER.match(line)
        name = m.group(1) if m else ""
        return next((c for p, c in _LOGGERS if name == p or name.startswith(p + ".")),
                    "api-server")

    def read(self) -> list[str]:
        try:
            with self.path.open("rb") as f:
                f.seek(self.offset)
                data = f.read()
        except OSError:
            return []
        self.offset += len(data)
        *lines, self.rest = (self.rest + data).split(b"\n")
        return [line.decode(errors="replace") for line in lines]


def _sources(data_dir: Path) -> list[_Source]:
    out = [_Source("", data_dir / DEV_LOG),
           _Source("registry", data_dir / "registry" / "registry.log")]
    for wdir in sorted((data_dir / "workers").glob("worker-*")):
        out.append(_Source(wdir.name, wdir / "worker.log"))
        out.append(_Source(f"{wdir.name}/envoy", wdir / "envoy" / "envoy.log"))
    return [s for s in out if s.path.exists()]


def logs(ctx: typer.Context,
         follow: Annotated[bool, typer.Option("-f", "--follow",
                                              help="Keep printing new lines.")] = False,
         tail: Annotated[int, typer.Option(
             "--tail", metavar="N", help="Only the last N lines of each component "
             "(-1: all).")] = -1,
         ) -> None:
    """Every component's log lines, each prefixed [component]."""
    data_dir: Path = ctx.obj.data_dir
    sources = _sources(data_dir)
    if not sources and not follow:
        raise CLIError(f"no logs under {data_dir}: has `clrk dev` run with it?")
    for source in sources:
        lines = source.read()
        for line in lines[-tail:] if tail >= 0 else lines:
            if tail != 0:
                print(f"[{source.label(line)}] {line}", flush=True)
    known = {s.path for s in sources}
    try:
        while follow:
            time.sleep(0.3)
            for new in _sources(data_dir):  # workers appear, logs are created
                if new.path not in known:
                    known.add(new.path)
                    sources.append(new)
            for source in sources:
                for line in source.read():
                    print(f"[{source.label(line)}] {line}", flush=True)
    except KeyboardInterrupt:
        return


def status_json(parts: list[Component], **extra: Any) -> str:
    return json.dumps({**extra, "components": [p.to_json() for p in parts]}, indent=4)
