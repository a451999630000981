"""The worker's egress plane: its node-local Envoy, one listener per EgressGateway of
the pool's namespace (with its EgressL4Routes), the port each gateway's sandboxes are
redirected to, and the DNS verdicts for their lookups.

Gateway ports come from a fixed range per worker (``15000 + 64 * index``), so one
firewall rule keeps everything but redirected sandbox traffic away from them.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import json
import logging
import socket
from pathlib import Path
from typing import Any

from lightkube import AsyncClient

from clrk.api.core import Secret
from clrk.api.gateway import EgressGateway
from clrk.api.routes import EgressL4Route
from clrk.client import follow, get_or_none, resource_class
from clrk.egress import l4
from clrk.egress.envoy import xds_files
from clrk.egress.envoy.listeners import (
    GatewayListener,
    base_clusters,
    host_clusters,
    listener,
)
from clrk.egress.envoy.supervisor import EnvoySupervisor
from clrk.worker.attribution import Attributions
from clrk.worker.telemetry import TelemetryReporter

log = logging.getLogger("clrk.worker.egress")
PORTS_PER_WORKER = 64
CONFIG_SETTLE = 0.5  # seconds Envoy is given to load a new chain (it watches the files)
TAIL_SECONDS = 0.5
MAX_VIRTUAL = 4096  # virtual addresses per worker (each is a filter chain per port)


def port_range(index: int) -> tuple[int, int]:
    first = 15000 + PORTS_PER_WORKER * index
    return first, first + PORTS_PER_WORKER - 1


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class EgressPlane:
    def __init__(self, client: AsyncClient, state_dir: Path, namespace: str, index: int,
                 node_id: str) -> None:
        self.client = client
        self.state_dir = state_dir
        self.namespace = namespace
        self.first, self.last = port_range(index)
        self.envoy = EnvoySupervisor(state_dir / "envoy", _free_port(), node_id)
        self.gateways: dict[str, dict[str, Any]] = {}
        self.l4routes: dict[str, dict[str, Any]] = {}
        self.plans: dict[str, l4.GatewayRoutes] = {}
        self.vips: dict[str, str] = {}  # routed hostname -> its virtual address
        self.ports: dict[str, int] = {}
        self.attribution: Attributions | None = None
        self.reporter: TelemetryReporter | None = None
        self._offsets: dict[Path, int] = {}
        self._lookups: list[dict[str, Any]] = []

    def port_for(self, namespace: str, gateway: str) -> int | None:
        """Where a sandbox of an agent using ``gateway`` is redirected (None: unknown
        gateway, so its traffic is dropped: fail closed)."""
        if namespace != self.namespace or gateway not in self.gateways:
            return None
        return self.ports.get(gateway)

    def gateway_at(self, port: int) -> dict[str, Any] | None:
        name = next((n for n, p in self.ports.items() if p == port), None)
        return self.gateways.get(name) if name else None

    async def ca_at(self, port: int) -> bytes | None:
        """The CA of the gateway at ``port`` (from its CA Secret): what its sandboxes
        must trust for the TLS it terminates."""
        gw = self.gateway_at(port)
        if gw is None:
            return None
        name = gw["metadata"]["name"]
        secret_name = (gw.get("status") or {}).get("caSecretName") or \
            f"clrk-egressgateway-ca-{name}"
        secret = await get_or_none(self.client, resource_class(Secret), secret_name,
                                   self.namespace)
        data = (secret or {}).get("data") or {}
        raw = data.get("ca.crt") or data.get("tls.crt")
        return base64.b64decode(raw) if raw else None

    def _vip(self, hostname: str) -> tuple[str | None, bool]:
        """The hostname's virtual address (None when the worker has handed out all it
        will: names under a wildcard are the sandbox's to invent), and whether it is new."""
        if hostname in self.vips:
            return self.vips[hostname], False
        if len(self.vips) >= MAX_VIRTUAL:
            log.warning("no virtual address for %s: %d are in use", hostname, MAX_VIRTUAL)
            return None, False
        # Handed out in order and never taken back: the next one is the count's.
        vip = str(l4.VIRTUAL.network_address + 1 + len(self.vips))
        self.vips[hostname] = vip
        return vip, True

    async def dns_verdict(self, port: int | None, name: str) -> str | bool:
        """A sandbox without a gateway resolves nothing; a name a route of its gateway
        names gets its virtual address; anything else resolves only under allow-all."""
        gw = self.gateway_at(port) if port is not None else None
        if gw is None:
            return False
        plan = self.plans.get(gw["metadata"]["name"])
        if plan is not None and plan.host_ports(name):
            vip, new = self._vip(name)
            if new:  # a wildcard's new name: Envoy needs its chain before the connect
                self._apply()
                await asyncio.sleep(CONFIG_SETTLE)
            return vip if vip is not None else False
        return bool((gw.get("spec") or {}).get("defaultPolicy") == "allow-all")

    def access_log(self, gateway: str) -> Path:
        return self.state_dir / "envoy" / f"access-{self.namespace}-{gateway}.log"

    async def run(self, stop: asyncio.Event) -> None:
        await self.envoy.start()
        try:
            await self.envoy.ready()
        except TimeoutError as err:
            log.error("%s", err)
        watcher = asyncio.create_task(self._watch())
        tailer = asyncio.create_task(self._tail(stop))
        await stop.wait()
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
        await tailer
        await self.envoy.stop()

    async def _tail(self, stop: asyncio.Event) -> None:
        """Every connection in the gateways' access logs goes to the telemetry store,
        attributed to the execution that owned its source address."""
        while True:
            for gateway in list(self.ports):
                with contextlib.suppress(Exception):  # a bad line or a busy API: next round
                    await self._ship(gateway)
            with contextlib.suppress(Exception):
                await self._ship_lookups()
            if stop.is_set():
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), TAIL_SECONDS)

    def lookup(self, sandbox: str, name: str, verdict: str, answers: list[str]) -> None:
        """A sandbox's DNS question, for the records (shipped with the connections)."""
        if len(self._lookups) < 10_000:
            self._lookups.append({"kind": "dns", "sandbox": sandbox, "name": name,
                                  "verdict": verdict, "answers": answers,
                                  "start_time": dt.datetime.now(dt.UTC).isoformat()})

    def _attribution(self, address: str) -> dict[str, str] | None:
        return self.attribution.json_of(address) if self.attribution else None

    async def _ship_lookups(self) -> None:
        if self.reporter is None or not self._lookups:
            return
        pending, self._lookups = self._lookups, []
        for item in pending:
            item["attribution"] = self._attribution(item["sandbox"])
        await self.reporter.connections(self.namespace, "dns", pending)

    async def _ship(self, gateway: str) -> None:
        path = self.access_log(gateway)
        if self.reporter is None or not path.exists():
            return
        offset = self._offsets.get(path, 0)
        with path.open("rb") as f:
            f.seek(offset)
            data = f.read(1 << 20)
        complete = data[:data.rfind(b"\n") + 1]
        if not complete:
            return
        items = []
        for line in complete.splitlines():
            with contextlib.suppress(ValueError):
                item = json.loads(line)
                item["attribution"] = self._attribution(
                    str(item.get("source", "")).rsplit(":", 1)[0])
                items.append(item)
        if await self.reporter.connections(self.namespace, gateway, items):
            self._offsets[path] = offset + len(complete)

    async def _watch(self) -> None:
        await asyncio.gather(self._follow(EgressGateway, self.gateways),
                             self._follow(EgressL4Route, self.l4routes))

    async def _follow(self, kind: Any, into: dict[str, dict[str, Any]]) -> None:
        def seen(op: str, doc: dict[str, Any]) -> None:
            name = doc["metadata"]["name"]
            if op == "DELETED" or doc["metadata"].get("deletionTimestamp"):
                into.pop(name, None)
            else:
                into[name] = doc
            self._apply()

        await follow(self.client, resource_class(kind), self.namespace, seen, log,
                     kind.kind_info.kind)

    def _apply(self) -> None:
        listeners = []
        clusters = base_clusters()
        self.plans = {name: l4.plan(doc, list(self.l4routes.values()))
                      for name, doc in self.gateways.items()}
        for plan in self.plans.values():
            for problem in plan.problems:
                log.warning("%s", problem)
            for rule in plan.rules:
                for host in rule.hostnames:
                    if "*" not in host:
                        self._vip(host)
        for name, doc in sorted(self.gateways.items()):
            port = self.ports.get(name)
            if port is None:
                taken = set(self.ports.values())
                port = next((p for p in range(self.first, self.last + 1) if p not in taken),
                            None)
                if port is None:
                    log.error("no port left for EgressGateway %s (at most %d per worker)",
                              name, PORTS_PER_WORKER)
                    continue
                self.ports[name] = port
            policy = (doc.get("spec") or {}).get("defaultPolicy") or "deny-all"
            plan = self.plans[name]
            vips = {h: v for h, v in self.vips.items() if plan.host_ports(h)}
            listeners.append(listener(GatewayListener(self.namespace, name, port, policy,
                                                      self.access_log(name)), plan, vips))
            known = {c["name"] for c in clusters}
            clusters += [c for c in host_clusters(plan, vips) if c["name"] not in known]
        xds_files.write(self.envoy.config_dir, listeners, clusters)
