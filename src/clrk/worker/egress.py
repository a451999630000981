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
import hashlib
import ipaddress
import json
import logging
import secrets
import socket
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from lightkube import AsyncClient

from clrk import pki
from clrk.api.backend import Backend
from clrk.api.core import Secret
from clrk.api.gateway import EgressGateway
from clrk.api.meta import parse_duration
from clrk.api.policies import (
    CredentialInjectionPolicy,
    EgressDenyPolicy,
    FallbackRoutingPolicy,
    LoggingPolicy,
    RateLimitPolicy,
)
from clrk.api.routes import AIProviderRoute, EgressL4Route, MCPRoute
from clrk.client import follow, resource_class
from clrk.egress import l4, routing
from clrk.egress.attribution import Attribution, Attributions
from clrk.egress.envoy.access_logs import AccessLogs
from clrk.egress.envoy.clusters import aggregate_cluster, outlier_detection
from clrk.egress.envoy.http import (
    BackendRoute,
    Native,
    TerminatedHost,
    cleartext_chain,
    plain_upstream_cluster,
    policy_cluster,
    terminated_chain,
    tls_upstream_cluster,
)
from clrk.egress.envoy.listeners import (
    GatewayListener,
    base_clusters,
    host_clusters,
    listener,
)
from clrk.egress.envoy.metering import Metering
from clrk.egress.envoy.supervisor import EnvoySupervisor
from clrk.egress.leaves import LeafCertificates
from clrk.egress.metered import METERED_PROVIDERS, Meter, MeterFiles, record_fields
from clrk.egress.policy import credentials
from clrk.egress.policy.attachments import Target
from clrk.egress.policy.service import PolicyService
from clrk.egress.policy.state import PolicyState
from clrk.egress.scrub import Patterns
from clrk.egress.secret_files import SecretFiles
from clrk.telemetry import connections, otlp_export
from clrk.worker.telemetry import TelemetryReporter

log = logging.getLogger("clrk.worker.egress")
PORTS_PER_WORKER = 64
CONFIG_WAIT = 2.0  # at most, for Envoy to load a new chain (it watches the files)
CA_WAIT = 30.0  # at most, for a gateway's CA Secret to reach this worker
TAIL_SECONDS = 0.5
MAX_VIRTUAL = 4096  # virtual addresses per worker (each is a filter chain per port)
MAX_PENDING = 10_000  # records waiting for the next batch
SYSTEM_ROOTS = Path("/etc/ssl/certs/ca-certificates.crt")
FOLLOWED = (EgressGateway, EgressL4Route, AIProviderRoute, MCPRoute, Backend,
            CredentialInjectionPolicy, RateLimitPolicy, EgressDenyPolicy, LoggingPolicy,
            FallbackRoutingPolicy, Secret)


@dataclass(frozen=True)
class EnvoyPolicies:
    """What a route's policies ask of Envoy when it serves the route alone."""
    header: str | None = None  # the credential header
    value: str = ""  # its value
    secret: str = ""  # a name for the credential (its policy and Secret)
    secret_value: str = ""  # the Secret's value (without the header's prefix)
    deny: tuple[int, str] | None = None  # the deny policy's status and message


def ca_secret_name(gateway: dict[str, Any]) -> str:
    return str((gateway.get("status") or {}).get("caSecretName")
               or f"clrk-egressgateway-ca-{gateway['metadata']['name']}")


def system_roots() -> bytes:
    if SYSTEM_ROOTS.exists():
        return SYSTEM_ROOTS.read_bytes()
    import certifi

    return Path(certifi.where()).read_bytes()


def _retry(policy: dict[str, Any] | None) -> tuple[int, tuple[int, ...], float | None] | None:
    """A FallbackRoutingPolicy's retry, for Envoy's retry policy."""
    if policy is None:
        return None
    retry = policy.get("retry") or {}
    per_try = retry.get("perTryTimeout")
    return (int(retry.get("attempts", 2)),
            tuple(int(c) for c in retry.get("retryOn") or (429, 503)),
            parse_duration(per_try).total_seconds() if per_try else None)


def port_range(index: int) -> tuple[int, int]:
    """The worker's gateway ports and, last, its UDP relay's."""
    first = 15000 + PORTS_PER_WORKER * index
    return first, first + PORTS_PER_WORKER - 1


def udp_relay_port(index: int) -> int:
    return port_range(index)[1]


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
        self.last -= 1  # the range's last port is the UDP relay's
        self.envoy = EnvoySupervisor(state_dir / "envoy", _free_port(), node_id)
        self.docs: dict[str, dict[str, dict[str, Any]]] = {k.kind_info.kind: {}
                                                           for k in FOLLOWED}
        self.gateways = self.docs["EgressGateway"]
        self.l4routes = self.docs["EgressL4Route"]
        self.state = PolicyState(namespace, self.gateways, secrets=self.docs["Secret"],
                                 backends=self.docs["Backend"])
        for kind in self.state.policies.by_kind:
            self.state.policies.by_kind[kind] = self.docs[kind]
        self.plans: dict[str, l4.GatewayRoutes] = {}
        self.leaves = LeafCertificates(state_dir / "envoy" / "leaves")
        self.policy = PolicyService(self.state, state_dir / "envoy" / "policy.sock")
        self.secret_files = SecretFiles(state_dir)
        self.meter_files = MeterFiles(self.secret_files.directory)
        self._native_secrets: set[str] = set()
        self._applied = asyncio.Event()  # set, and replaced, by each _apply
        self._resolved: dict[str, str] = {}
        self._resolving: set[str] = set()
        self.vips: dict[str, str] = {}  # routed hostname -> its virtual address
        self.ports: dict[str, int] = {}
        self.reporter: TelemetryReporter | None = None
        self.exporter = otlp_export.OTLPExporter()
        self.dropped_records = 0
        self.access_logs = AccessLogs(state_dir / "envoy" / "access-offsets.json",
                                      self.envoy.reopen_logs)
        self._pending: list[dict[str, Any]] = []

    @property
    def attribution(self) -> Attributions:
        return self.state.attribution

    def attach(self, attribution: Attributions, reporter: TelemetryReporter) -> None:
        """Who owns each sandbox address, and where records and budgets go."""
        self.state.attribution = attribution
        attribution.traces = self.meter_files.trace
        self.reporter = reporter
        self.state.records = self
        self.state.budgets = reporter

    async def connections(self, ns: str, gateway: str, items: list[dict[str, Any]]) -> bool:
        """Records of a gateway: to the API server's store, and to the gateway's own
        OTLP endpoint when it names one (best effort, never waited on)."""
        for item in items:  # one identity for the stored and the exported copy
            item.setdefault("span_id", secrets.token_hex(8))
            item.setdefault("trace_id", secrets.token_hex(16))
        otlp = (((self.gateways.get(gateway) or {}).get("spec") or {}).get("otlp") or {})
        if otlp.get("endpoint"):
            spans, logs = connections.rows(ns, gateway, items)
            self.exporter.offer(otlp_export.Target(
                otlp["endpoint"], tuple(sorted((otlp.get("headers") or {}).items())), ns),
                spans, logs)
        return await self.reporter.connections(ns, gateway, items) \
            if self.reporter is not None else False

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
        must trust for the TLS it terminates. The Secret comes on its own watch and may
        reach this worker after an invocation of a gateway just made: the sandbox waits
        for it (at most ``CA_WAIT``) and for Envoy to load the chains it signs, since
        without them every TLS connection of the agent fails."""
        gw = self.gateway_at(port)
        if gw is None:
            return None
        pair = self._ca(gw)
        if pair is None:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + CA_WAIT
            while pair is None and (left := deadline - loop.time()) > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._applied.wait(), left)
                gw = self.gateway_at(port)
                if gw is None:
                    return None
                pair = self._ca(gw)
            if pair is None:
                log.warning("EgressGateway %s: no CA Secret %s after %gs; the sandbox starts "
                            "without it", gw["metadata"]["name"], ca_secret_name(gw), CA_WAIT)
                return None
            if not await self.envoy.loaded(CONFIG_WAIT):
                log.warning("envoy did not load the chains of %s within %gs",
                            gw["metadata"]["name"], CONFIG_WAIT)
        return pair.cert_pem

    def _ca(self, gateway: dict[str, Any]) -> pki.KeyPair | None:
        data = (self.state.secrets.get(ca_secret_name(gateway)) or {}).get("data") or {}
        if not data.get("tls.crt") or not data.get("tls.key"):
            return None
        return pki.KeyPair(base64.b64decode(data.get("ca.crt") or data["tls.crt"]),
                           base64.b64decode(data["tls.key"]))

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
        http = self.state.routes.get(gw["metadata"]["name"])
        if (plan is not None and plan.routed(name)) or (http and http.terminated(name)):
            vip, new = self._vip(name)
            if new:  # a wildcard's new name: Envoy needs its chain before the connect
                self._apply()
                if not await self.envoy.loaded(CONFIG_WAIT):
                    log.warning("envoy did not load the chain for %s within %gs", name,
                                CONFIG_WAIT)
            return vip if vip is not None else False
        return bool((gw.get("spec") or {}).get("defaultPolicy") == "allow-all")

    def udp_verdict(self, port: int | None, address: str, dport: int,
                    agent: tuple[str, str] | None = None
                    ) -> tuple[tuple[str, int] | None, str, str]:
        """Where a sandbox's UDP flow to ``address:dport`` may go: (target or None,
        the route or policy that decided, a reason when refused)."""
        gw = self.gateway_at(port) if port is not None else None
        if gw is None:
            return None, "", "the agent has no egress gateway"
        name = gw["metadata"]["name"]
        plan = self.plans.get(name) or l4.GatewayRoutes()
        hostname = next((h for h, v in self.vips.items() if v == address), None)
        rule = plan.udp_rule(address, dport, hostname, agent)
        if rule is not None:
            if hostname is None:
                return (address, dport), rule.route, ""
            return plan.dial(hostname, dport), rule.route, ""
        if hostname is None and (gw.get("spec") or {}).get("defaultPolicy") == "allow-all":
            return (address, dport), "allow-all", ""
        return None, "", "no UDP route of the gateway matches (deny-all)"

    def udp_flow(self, item: dict[str, Any]) -> None:
        """A finished (or refused) UDP flow, for the records."""
        if len(self._pending) < MAX_PENDING:
            self._pending.append(item)

    def record(self, gateway: str, item: dict[str, Any]) -> None:
        """A record from the policy service (an HTTP request, a refused connection),
        shipped with the next batch; beyond ``MAX_PENDING`` waiting ones, dropped."""
        if len(self._pending) < MAX_PENDING:
            self._pending.append({**item, "gateway": gateway})
        else:
            self.dropped_records += 1

    def access_log(self, gateway: str) -> Path:
        return self.state_dir / "envoy" / f"access-{self.namespace}-{gateway}.log"

    async def run(self, stop: asyncio.Event) -> None:
        await self.policy.start()
        await self.envoy.start()
        try:
            await self.envoy.ready()
        except TimeoutError as err:
            log.error("%s", err)
        watcher = asyncio.create_task(self._watch())
        exporting = asyncio.create_task(self.exporter.run(stop))
        tailer = asyncio.create_task(self._tail(stop))
        await stop.wait()
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
        await tailer
        await exporting
        await self.envoy.stop()
        await self.policy.stop()
        self.secret_files.remove()

    async def _tail(self, stop: asyncio.Event) -> None:
        """Every connection in the gateways' access logs goes to the telemetry store,
        attributed to the execution that owned its source address."""
        while True:
            for gateway in list(self.ports):
                with contextlib.suppress(Exception):  # a bad line or a busy API: next round
                    await self._ship(gateway)
            with contextlib.suppress(Exception):
                await self._ship_pending()
            if stop.is_set():
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), TAIL_SECONDS)

    def lookup(self, sandbox: str, name: str, verdict: str, answers: list[str]) -> None:
        """A sandbox's DNS question, for the records (shipped with the connections)."""
        if len(self._pending) < MAX_PENDING:
            self._pending.append({"kind": "dns", "sandbox": sandbox, "name": name,
                                  "verdict": verdict, "answers": answers,
                                  "start_time": dt.datetime.now(dt.UTC).isoformat()})

    def _attribution(self, address: str) -> dict[str, str] | None:
        return self.attribution.json_of(address) if self.attribution else None

    async def _ship_pending(self) -> None:
        if self.reporter is None or not self._pending:
            return
        pending, self._pending = self._pending, []
        for item in pending:
            if "attribution" not in item:
                item["attribution"] = self._attribution(str(item.get("sandbox", "")))
        for gateway in {str(i.get("gateway") or "dns") for i in pending}:
            await self.connections(self.namespace, gateway,
                                   [i for i in pending if (i.get("gateway") or "dns") == gateway])

    async def _ship(self, gateway: str) -> None:
        path = self.access_log(gateway)
        if self.reporter is None:
            return
        chunks = self.access_logs.pending(path)
        items = []
        for line in b"".join(c.data for c in chunks).splitlines():
            with contextlib.suppress(ValueError):
                item = json.loads(line)
                who = self.attribution.of(str(item.get("source", "")).rsplit(":", 1)[0])
                if item.get("provider"):  # a call Envoy metered alone
                    with contextlib.suppress(ValueError, TypeError):  # else without usage
                        item.update(record_fields(item))
                        if who is not None:
                            self._count_execution_tokens(gateway, who, item)
                if isinstance(item.get("scrubbed"), int | float) and item["scrubbed"] > 0:
                    item["attributes"] = {**(item.get("attributes") or {}),
                                          "clrk.egress.scrubbed": str(int(item["scrubbed"]))}
                item["attribution"] = who.to_json() if who else None
                items.append(item)
        if chunks and await self.connections(self.namespace, gateway, items):
            self.access_logs.taken(chunks)
        await self.access_logs.rotate(path)

    def _count_execution_tokens(self, gateway: str, who: Attribution,
                                item: dict[str, Any]) -> None:
        """A metered call's tokens count toward its execution, as the policy service's
        calls do, so a maxTokensPerExecution attached mid-execution sees them."""
        attrs = item["attributes"]
        route = str(item.get("route") or "").partition("/")[2]
        routes = self.state.routes.get(gateway)
        rule = next((r for r in routes.ai_candidates(str(item.get("host") or ""))
                     if r.route == route), None) if routes else None
        tokens = sum(int(attrs.get(f"gen_ai.usage.{k}_tokens") or 0)
                     for k in ("input", "output"))
        if rule is not None and tokens:
            self.state.execution_tokens.add(who.invocation, rule.name, tokens)

    async def _watch(self) -> None:
        await asyncio.gather(*(self._follow(kind) for kind in FOLLOWED), self._renew())

    async def _renew(self) -> None:
        """Leaf certificates are reissued before they expire."""
        while True:
            due = self.leaves.renew_due()
            wait = 3600.0 if due is None else (due - dt.datetime.now(dt.UTC)).total_seconds()
            await asyncio.sleep(min(max(wait, 1.0), 3600.0))
            if due is not None and due <= dt.datetime.now(dt.UTC):
                self._apply()

    async def _follow(self, kind: Any) -> None:
        await follow(self.client, resource_class(kind), self.namespace,
                     lambda op, doc: self.seen(kind, op, doc), log, kind.kind_info.kind)

    def seen(self, kind: Any, op: str, doc: dict[str, Any]) -> None:
        """One event of a watched kind: kept, and the configuration it shapes applied."""
        into = self.docs[kind.kind_info.kind]
        name = doc["metadata"]["name"]
        if op == "DELETED" or doc["metadata"].get("deletionTimestamp"):
            into.pop(name, None)
        else:
            into[name] = doc
        if kind is not Secret or self._shapes_config(name):
            self._apply()

    def _shapes_config(self, secret: str) -> bool:
        """Whether a Secret is a gateway's CA or trust bundle (credentials are read at
        request time and never reach Envoy's configuration)."""
        for gw in self.gateways.values():
            trust = ((gw.get("spec") or {}).get("upstreamTLS") or {}).get(
                "additionalTrustBundleSecretRef") or {}
            if secret in (ca_secret_name(gw), trust.get("name")):
                return True
        return secret in self._native_secrets

    def _trust(self, gateway: dict[str, Any]) -> Path:
        """System roots plus the gateway's additional trust bundle, for upstream TLS."""
        bundle = system_roots()
        ref = ((gateway.get("spec") or {}).get("upstreamTLS") or {}).get(
            "additionalTrustBundleSecretRef")
        if ref:
            data = (self.state.secrets.get(ref["name"]) or {}).get("data") or {}
            if data.get(ref["key"]):
                bundle += b"\n" + base64.b64decode(data[ref["key"]])
            else:
                log.warning("EgressGateway %s: trust bundle %s/%s not found",
                            gateway["metadata"]["name"], ref["name"], ref["key"])
        # Named by its content: Envoy reads a trust file when it builds a cluster, and a
        # cluster whose configuration is unchanged is kept, so a bundle rewritten in place
        # (its Secret arriving after the gateway, as after a worker restart) was never
        # used and upstream TLS failed; a new name is a changed cluster, rebuilt.
        name = gateway["metadata"]["name"]
        path = self.envoy.config_dir / \
            f"trust-{name}-{hashlib.sha256(bundle).hexdigest()[:16]}.pem"
        if not path.exists():
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(bundle)
            tmp.replace(path)
        for old in self.envoy.config_dir.glob(f"trust-{name}-{'?' * 16}.pem"):
            if old != path and old.stat().st_mtime < time.time() - 300:
                old.unlink(missing_ok=True)  # long replaced: no cluster names it now
        return path

    def _terminated(self, name: str, gateway: dict[str, Any], http: routing.HttpRoutes,
                    plan: l4.GatewayRoutes) -> tuple[list[dict[str, Any]],
                                                     list[dict[str, Any]], dict[Path, Meter]]:
        """TLS-terminating chains (and their upstream clusters): for the hosts the
        gateway's AI and MCP routes name (through the policy service), and for
        EgressL4Route hostnames on a terminating listener (Envoy alone when their
        policies allow it); and the meter files of the provider hosts Envoy meters."""
        ca = self._ca(gateway)
        wanted: list[tuple[str, str, int, str | None, bool]] = [
            (h, v, routing.HTTPS, None, True) for h, v in sorted(self.vips.items())
            if http.terminated(h)]
        for host, vip in sorted(self.vips.items()):
            for port in sorted(plan.host_ports(host)):
                rule = plan.terminated(host, port)
                if rule is not None and not (port == routing.HTTPS and http.terminated(host)):
                    wanted.append((host, vip, port, rule.route, True))
                plain = plan.plain_http(host, port)
                if plain is not None:
                    wanted.append((host, vip, port, plain.route, False))
        if ca is None:
            if wanted:
                log.warning("EgressGateway %s: CA Secret %s not ready; its routed hosts "
                            "are refused until it is", name, ca_secret_name(gateway))
            return [], [], {}
        chains: list[dict[str, Any]] = []
        clusters: list[dict[str, Any]] = []
        meters: dict[Path, Meter] = {}
        trust = self._trust(gateway)
        plain_http = {(h, p) for h, _, p, _, tls in wanted if not tls}

        backends = self._backends(http, plan, trust, clusters)
        for host, vip, port, l4_route, tls in wanted:
            cluster = f"{'tls' if tls else 'http'}/{self.namespace}/{name}/{host}/{port}"
            address, dial_port = plan.dial(host, port)
            clusters.append(tls_upstream_cluster(cluster, host, address, dial_port, trust)
                            if tls else plain_upstream_cluster(cluster, address, dial_port))
            route = f"EgressL4Route/{l4_route}" if l4_route else ""
            mine = tuple(backends[b] for ai_rule in http.ai_candidates(host)
                         for b, _ in ai_rule.backends if b in backends) if not l4_route else ()
            bodies = l4_route is None and http.needs_bodies(host)
            meter = None
            if bodies:
                meter = Metering(self.meter_files.meter_file(name, host),
                                 self.meter_files.traces, self.access_log(name))
                metered = self._metered(name, http, host)
                if metered is not None:
                    meters[meter.meter_file] = metered
            terminated = TerminatedHost(
                f"{self.namespace}/{name}", host, vip, port,
                self.leaves.leaf(ca, host) if tls else None, bodies, cluster, route,
                self._native(name, l4_route) if l4_route else None,
                tuple(dict.fromkeys(mine)), meter, self.access_log(name))
            chains.append(terminated_chain(terminated))
            if tls and (host, port) not in plain_http:  # a CONNECT in clear is answered too
                chains.append(cleartext_chain(terminated))
        return chains, clusters, meters

    def _addresses(self, plan: l4.GatewayRoutes, vips: dict[str, str]) -> dict[str, str]:
        """Addresses of the hosts routed on every port (their alias's, or resolved in
        the background: until then their connections are refused)."""
        out = {}
        for host in vips:
            if not plan.every_port(host):
                continue
            target, _ = plan.dial(host, 0)
            try:
                ipaddress.ip_address(target)
                out[host] = target
            except ValueError:
                if target in self._resolved:
                    out[host] = self._resolved[target]
                elif target not in self._resolving:
                    self._resolving.add(target)
                    task = asyncio.get_running_loop().create_task(self._resolve(target))
                    task.add_done_callback(lambda _: None)
        return out

    async def _resolve(self, target: str) -> None:
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(target, None,
                                                                 type=socket.SOCK_STREAM)
            self._resolved[target] = str(infos[0][4][0])
            self._apply()
        except OSError as err:
            log.warning("cannot resolve %s for its any-port route: %s", target, err)
        finally:
            self._resolving.discard(target)

    def _backends(self, http: routing.HttpRoutes, plan: l4.GatewayRoutes, trust: Path,
                  clusters: list[dict[str, Any]]) -> dict[str, BackendRoute]:
        """The Backends the gateway's AI rules name, by name, their clusters added to
        ``clusters``. A Backend's routing is that of the first rule naming it. Under a
        FallbackRoutingPolicy, a rule of several Backends falls back from the one the
        policy service picked to the rule's others, in their order (an aggregate
        cluster), and its ``ejection`` takes a failing Backend out for a while."""
        made: dict[str, str] = {}  # Backend -> its cluster
        first: dict[str, routing.AIRule] = {}
        for ai_rule in http.ai:
            for backend_name, _ in ai_rule.backends:
                spec = (self.docs["Backend"].get(backend_name) or {}).get("spec") or {}
                if backend_name in made or not spec.get("host"):
                    continue
                b_host, b_port = str(spec["host"]).lower(), int(spec.get("port") or 443)
                cluster = f"backend/{self.namespace}/{backend_name}"
                address, dial_port = plan.dial(b_host, b_port)
                clusters.append(tls_upstream_cluster(cluster, b_host, address, dial_port, trust)
                                if spec.get("tls", True) else
                                plain_upstream_cluster(cluster, address, dial_port, b_host))
                made[backend_name], first[backend_name] = cluster, ai_rule
        routes: dict[str, BackendRoute] = {}
        ejected: dict[str, dict[str, Any]] = {}
        for backend_name, ai_rule in first.items():
            policy = self._fallback(ai_rule.route)
            spec = self.docs["Backend"][backend_name]["spec"]
            chain = [backend_name, *(b for b, _ in ai_rule.backends
                                     if b in made and b != backend_name)]
            fallback = ""
            if policy is not None and len(chain) > 1:
                fallback = f"fallback/{self.namespace}/{backend_name}"
                clusters.append(aggregate_cluster(fallback, [made[b] for b in chain]))
            ejection = (policy or {}).get("ejection")
            if ejection:
                for b in chain:
                    ejected.setdefault(made[b], outlier_detection(
                        int(ejection.get("consecutiveErrors", 5)),
                        parse_duration(ejection.get("interval") or "10s").total_seconds(),
                        parse_duration(ejection.get("baseEjectionTime") or "30s")
                        .total_seconds()))
            routes[backend_name] = BackendRoute(backend_name, made[backend_name],
                                                str(spec["host"]).lower(),
                                                _retry(policy), fallback)
        for doc in clusters:
            doc.update(ejected.get(doc["name"], {}))
        return routes

    def _fallback(self, route: str) -> dict[str, Any] | None:
        """The spec of the FallbackRoutingPolicy on an AIProviderRoute."""
        for doc in self.state.policies.attached("FallbackRoutingPolicy",
                                                [Target("AIProviderRoute", route)]):
            return dict(doc["spec"])
        return None

    def _envoy_policies(self, gateway: str, route: Target) -> EnvoyPolicies | None:
        """What a route's policies ask of Envoy when it serves the route alone: a
        credential header and/or a deny answer. None: they need the policy service
        (rate limits, other credential targets, body capture)."""
        targets = [route, Target("EgressGateway", gateway)]
        policies = self.state.policies
        if policies.all_attached("RateLimitPolicy", targets) or \
                policies.attached("LoggingPolicy", targets):
            return None
        creds = policies.attached("CredentialInjectionPolicy", targets)
        if len(creds) > 1 or any((c["spec"].get("target") or "Header") != "Header"
                                 for c in creds):
            return None
        deny = None
        for doc in policies.attached("EgressDenyPolicy", targets):
            answer = doc["spec"].get("denyResponse") or {}
            deny = (int(answer.get("statusCode") or 403), answer.get("message") or
                    f"denied by EgressDenyPolicy {doc['metadata']['name']}")
        if not creds or deny is not None:
            return EnvoyPolicies(deny=deny)
        spec = creds[0]["spec"]
        # Envoy's answer depends on this Secret whether or not it exists yet: its
        # arrival (it may come after the policy, on its own watch) reapplies the config.
        self._native_secrets.add(spec["secretRef"]["name"])
        try:
            value = credentials.secret_value(self.state.secrets, spec["secretRef"]["name"],
                                             spec["secretKey"])
        except credentials.MissingCredential as err:
            return EnvoyPolicies(deny=(503, f"credential unavailable: {err}"))
        return EnvoyPolicies(str(spec["headerName"]).lower(),
                             (spec.get("valuePrefix") or "") + value,
                             f"{creds[0]['metadata']['name']}-{spec['secretRef']['name']}",
                             value)

    def _native(self, gateway: str, route: str) -> Native | None:
        """Envoy alone serves an L4 route's terminated HTTP when its policies allow."""
        alone = self._envoy_policies(gateway, Target("EgressL4Route", route))
        if alone is None:
            return None
        native = Native(f"EgressL4Route/{route}", self.access_log(gateway), deny=alone.deny)
        if alone.header is None or alone.deny is not None:
            return native
        # The scrub file first: Envoy must never inject a value its answers are not
        # scrubbed of.
        scrub = self.secret_files.write_scrub(alone.secret, alone.secret_value)
        path = self.secret_files.write(alone.secret, alone.value)
        return replace(native, header=alone.header, secret_file=path,
                       secret_name=alone.secret, scrub_file=scrub)

    def _metered(self, gateway: str, http: routing.HttpRoutes, host: str) -> Meter | None:
        """Whether Envoy alone serves and meters the calls to a provider host (the
        conditions are in clrk.egress.metered)."""
        rules = http.ai_candidates(host)
        if len(rules) != 1 or any(l4.host_matches(h, host) for r in http.mcp
                                  for h in r.hosts):
            return None
        rule = rules[0]
        if rule.provider not in METERED_PROVIDERS or rule.models or rule.endpoints or \
                rule.budget or rule.backends:
            return None
        spec = (self.gateways.get(gateway) or {}).get("spec") or {}
        if ((spec.get("otlp") or {}).get("captureBody") or {}).get("maxBytes"):
            return None
        alone = self._envoy_policies(gateway, Target("AIProviderRoute", rule.route))
        if alone is None or alone.deny is not None or "\n" in alone.value or \
                "\r" in alone.value:
            return None
        return Meter(f"AIProviderRoute/{rule.route}", rule.provider, alone.header or "",
                     alone.value, Patterns.of([alone.secret_value] if alone.header
                                              else []).items)

    def _apply(self) -> None:
        self._native_secrets = set()
        meters: dict[Path, Meter] = {}
        listeners = []
        clusters = [*base_clusters(), policy_cluster(self.policy.socket)]
        self.plans = {name: l4.plan(doc, list(self.l4routes.values()))
                      for name, doc in self.gateways.items()}
        backends = self.docs["Backend"]
        self.state.routes = {
            name: routing.plan(doc, list(self.docs["AIProviderRoute"].values()),
                               list(self.docs["MCPRoute"].values()), backends)
            for name, doc in self.gateways.items()}
        for http in self.state.routes.values():
            for problem in http.problems:
                log.warning("%s", problem)
            for host in http.host_patterns():
                if "*" not in host:
                    self._vip(host)
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
            vips = {h: v for h, v in self.vips.items()
                    if plan.host_ports(h) or plan.every_port(h)}
            chains, tls_clusters, metered = self._terminated(name, doc,
                                                             self.state.routes[name], plan)
            meters.update(metered)
            denied = frozenset(
                d["spec"]["targetRef"]["name"] for d in self.docs["EgressDenyPolicy"].values()
                if d["spec"]["targetRef"].get("kind") == "EgressL4Route")
            listeners.append(listener(GatewayListener(self.namespace, name, port, policy,
                                                      self.access_log(name)), plan, vips,
                                      chains, denied, self._addresses(plan, vips)))
            known = {c["name"] for c in clusters}
            clusters += [c for c in [*host_clusters(plan, vips), *tls_clusters]
                         if c["name"] not in known]
        self.meter_files.sync(meters)
        self.envoy.write(listeners, clusters)
        self._applied.set()  # whoever waits for a change looks again
        self._applied = asyncio.Event()
