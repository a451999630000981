"""What `clrk dev` is made of, and how each part is doing: the API server and the
controller manager (in the dev process), the dev registry, each worker and each
worker's Envoy (child processes). `clrk dev status`, `wait-ready` and `logs` read
this; the dev process computes it on request.
"""

from __future__ import annotations

import json
import os
import time
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from pydantic.alias_generators import to_camel

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Component:
    name: str
    state: str  # running | starting | exited | not started
    ready: bool
    pid: int | None = None
    uptime_seconds: float | None = None
    address: str = ""
    log: str = ""
    restarts: int = 0

    def to_json(self) -> dict[str, Any]:
        """camelCase keys, as the API's objects have them."""
        return {to_camel(k): v for k, v in asdict(self).items()}

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Component:
        return cls(**{k: doc[to_camel(k)] for k in cls.__dataclass_fields__
                      if to_camel(k) in doc})


def process_uptime(pid: int) -> float | None:
    """Seconds since ``pid`` started, or None when it is gone (or a zombie)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        boot_seconds = float(Path("/proc/uptime").read_text().split()[0])
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] == "Z":
        return None
    return max(0.0, boot_seconds - int(fields[19]) / _CLOCK_TICKS)


def envoy(worker: str, worker_dir: Path) -> Component:
    """A worker's Envoy, from the files its supervisor keeps (pid, bootstrap, log)."""
    config = worker_dir / "envoy"
    name = f"{worker}/envoy"
    log = str(config / "envoy.log")
    try:
        pid = int((config / "envoy.pid").read_text())
        admin = json.loads((config / "bootstrap.json").read_text())["admin"]["address"]
        port = int(admin["socket_address"]["port_value"])
    except (OSError, ValueError, KeyError):
        return Component(name, "not started", False, log=log)
    uptime = process_uptime(pid)
    if uptime is None:
        return Component(name, "exited", False, pid, log=log)
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=2) as r:
            ready = r.status == 200
    except OSError:
        ready = False
    return Component(name, "running" if ready else "starting", ready, pid, uptime,
                     f"127.0.0.1:{port} (admin)", log)


def since(started: float) -> float:
    return max(0.0, time.time() - started)


def human_uptime(seconds: float | None) -> str:
    """kubectl's AGE style: 42s, 5m, 3h, 2d."""
    if seconds is None:
        return "-"
    s = int(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= size:
            return f"{s // size}{unit}"
    return f"{s}s"
