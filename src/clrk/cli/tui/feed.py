"""What the TUI shows, gathered the way any client would: objects from the API server
(the kubeconfig `clrk dev` wrote), components from dev.sock, live records by following
the OTLP receiver's tail. The blocking reads run in threads, never on the TUI's loop."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from lightkube import ApiError
from lightkube.resources.core_v1 import Event

from clrk.api.agents import DaemonAgent, TaskAgent
from clrk.api.invocation import Invocation
from clrk.api.workerpool import WorkerPool
from clrk.cli import output
from clrk.cli.agent_api import API, http
from clrk.cli.context import Options
from clrk.cli.dev_commands import components
from clrk.cli.dev_components import Component
from clrk.cli.dev_control import NotRunning
from clrk.cli.errors import CLIError
from clrk.client import resource_class, to_dict
from clrk.kubeconfig import HOST_KUBECONFIG

AGENT_KINDS = {"TaskAgent": TaskAgent, "DaemonAgent": DaemonAgent}
MAX_INVOCATIONS = 500


@dataclass
class Snapshot:
    agents: list[dict[str, Any]] = field(default_factory=list)
    pools: list[dict[str, Any]] = field(default_factory=list)
    invocations: list[dict[str, Any]] = field(default_factory=list)  # newest last
    components: list[Component] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # what could not be read, and why

    def receiver(self) -> str | None:
        return next((c.address for c in self.components
                     if c.name == "otlp-receiver" and c.address), None)


@dataclass(frozen=True)
class AgentDetail:
    obj: dict[str, Any]
    events: list[dict[str, Any]]
    logs: list[str]

    def yaml(self) -> str:
        return output.dump([self.obj], "yaml", single=True)


class Feed:
    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.opts = Options(kubeconfig=data_dir / HOST_KUBECONFIG, data_dir=data_dir)

    def snapshot(self) -> Snapshot:
        """Everything the views list (blocking: call it in a thread)."""
        snap = Snapshot()
        try:
            snap.components = components(self.data_dir)
        except (NotRunning, OSError, ValueError) as err:
            snap.problems.append(f"clrk dev: {err}")
        try:
            client = self.opts.client()
            for cls in (TaskAgent, DaemonAgent):
                snap.agents += [to_dict(o) for o in client.list(resource_class(cls),
                                                                  namespace="*")]
            snap.pools = [to_dict(o) for o in client.list(resource_class(WorkerPool),
                                                          namespace="*")]
            items = [to_dict(o) for o in client.list(resource_class(Invocation),
                                                     namespace="*")]
        except (ApiError, httpx.HTTPError, CLIError, OSError) as err:
            snap.problems.append(f"API server: {err}")
            return snap
        items.sort(key=lambda o: (o["metadata"].get("creationTimestamp", ""),
                                  int(o["metadata"].get("resourceVersion") or 0)))
        snap.invocations = items[-MAX_INVOCATIONS:]
        return snap

    def agent(self, kind: str, namespace: str, name: str, tail: int = 200) -> AgentDetail:
        """One agent, its Events and its last ``tail`` output lines (blocking)."""
        client = self.opts.client()
        cls = AGENT_KINDS[kind]
        obj = to_dict(client.get(resource_class(cls), name, namespace=namespace))
        events = [to_dict(e) for e in client.list(
            Event, namespace=namespace,
            fields={"involvedObject.name": name, "involvedObject.kind": kind})]
        path = f"{API}/namespaces/{namespace}/{cls.kind_info.plural}/{name}/logs"
        with http(self.opts, 30) as (http_client, server):
            r = http_client.get(server + path, params={"tailLines": str(tail)})
        lines = [f"[{i.get('invocation', '')[-8:]} {i.get('stream', '')}] {i.get('message', '')}"
                 for i in (r.json().get("items") or [])] if r.status_code == 200 else \
            [f"(logs: HTTP {r.status_code})"]
        return AgentDetail(obj, events, lines)

    async def follow(self, receiver: Callable[[], str | None],
                     on_record: Callable[[dict[str, Any]], None],
                     stop: asyncio.Event) -> None:
        """Every record of the OTLP tail, in order, from the oldest still kept; the
        stream is picked up again (past the last one seen) when `clrk dev` restarts."""
        after, instance = 0, ""
        async with httpx.AsyncClient(timeout=httpx.Timeout(5, read=None)) as client:
            while not stop.is_set():
                url = receiver()
                if url is None:
                    await asyncio.sleep(0.5)
                    continue
                try:
                    async with client.stream("GET", f"{url}/v1/tail", params={
                            "after": str(after), "receiver": instance}) as r:
                        async for line in r.aiter_lines():
                            if not line:
                                continue
                            doc = json.loads(line)
                            if "receiver" in doc:  # the first line: whose numbers these are
                                instance = str(doc["receiver"])
                                continue
                            after = int(doc["seq"])
                            on_record(doc["record"])
                except (httpx.HTTPError, ValueError, KeyError):
                    await asyncio.sleep(1)
