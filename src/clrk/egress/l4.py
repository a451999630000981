"""EgressL4Routes of one gateway, as the data plane needs them: which destinations
(CIDRs, hostnames) and ports a sandbox may reach under the gateway.

Hostnames work through virtual addresses: the DNS responder answers a route's hostname
with an address from 198.18.0.0/16 (never a real one, and off the sandboxes' subnet),
the connection to it is redirected to Envoy like any other, and Envoy dials the real
host (or its ``upstreamTLS.hostAliases`` address). So a hostname rule matches exactly
the names it lists, whatever addresses they have, and DNS never leaves the worker for
them.
"""

from __future__ import annotations

import fnmatch
import ipaddress
from dataclasses import dataclass, field
from typing import Any

VIRTUAL = ipaddress.IPv4Network("198.18.0.0/16")
MAX_PORTS_PER_RANGE = 64


@dataclass(frozen=True)
class L4Rule:
    cidrs: tuple[str, ...]
    hostnames: tuple[str, ...]
    ports: tuple[int, ...] | None  # None: every port (CIDR rules only)
    route: str = ""
    terminate: frozenset[int] = frozenset()  # ports whose TLS the gateway terminates
    udp: bool = False  # a UDP rule (the worker's relay serves it, not Envoy)
    http: frozenset[int] = frozenset()  # ports an HTTP listener serves as plain HTTP
    sources: tuple[str, ...] = ()  # "Kind/name" ("*/name": any kind); empty: every agent


@dataclass
class GatewayRoutes:
    rules: list[L4Rule] = field(default_factory=list)
    aliases: dict[str, str] = field(default_factory=dict)  # hostname -> host[:port]
    problems: list[str] = field(default_factory=list)

    def plain_http(self, name: str, port: int) -> L4Rule | None:
        """The rule whose hostname's plain HTTP on ``port`` the gateway's HTTP listener
        serves (HTTP policies then apply to it), if any."""
        return next((r for r in self.rules if port in r.http and any(
            host_matches(p, name) for p in r.hostnames)), None)

    def dial(self, name: str, port: int) -> tuple[str, int]:
        """Where a connection to ``name:port`` really goes: the hostname's alias
        (``host`` or ``host:port``) if it has one, else the name itself."""
        alias = self.aliases.get(name)
        if not alias:
            return name, port
        host, _, alias_port = alias.rpartition(":") if alias.count(":") == 1 \
            else (alias, "", "")
        return host or alias, int(alias_port) if alias_port.isdigit() else port

    def terminated(self, name: str, port: int) -> L4Rule | None:
        """The rule whose hostname TLS on ``port`` is terminated by the gateway (HTTP
        policies then apply to it), if any."""
        return next((r for r in self.rules if port in r.terminate and any(
            host_matches(p, name) for p in r.hostnames)), None)

    def host_ports(self, name: str, udp: bool = False) -> set[int]:
        """Ports the hostname may be reached on over TCP (or UDP) (empty: not routed)."""
        out: set[int] = set()
        for rule in self.rules:
            if rule.udp == udp and any(host_matches(p, name) for p in rule.hostnames):
                out.update(rule.ports or ())
        return out

    def every_port(self, name: str) -> bool:
        """Whether a TCP rule names the host without ports (any port it dials)."""
        return any(not r.udp and r.ports is None and any(host_matches(p, name)
                                                         for p in r.hostnames)
                   for r in self.rules)

    def routed(self, name: str) -> bool:
        """Whether any rule (TCP or UDP) names the host: DNS answers it."""
        return bool(self.host_ports(name) or self.host_ports(name, udp=True)
                    or self.every_port(name) or any(
                        r.udp and r.ports is None and any(host_matches(p, name)
                                                          for p in r.hostnames)
                        for r in self.rules))

    def udp_rule(self, address: str, port: int, hostname: str | None,
                 agent: tuple[str, str] | None = None) -> L4Rule | None:
        """The UDP rule that lets a datagram to ``address:port`` (or ``hostname``, for
        a virtual address) through."""
        for rule in self.rules:
            if not rule.udp or (rule.ports is not None and port not in rule.ports):
                continue
            if rule.sources and not admits(rule.sources, agent):
                continue
            if hostname is not None and any(host_matches(p, hostname)
                                            for p in rule.hostnames):
                return rule
            if hostname is None and any(ipaddress.ip_address(address) in
                                        ipaddress.ip_network(c, strict=False)
                                        for c in rule.cidrs):
                return rule
        return None


def admits(sources: tuple[str, ...], agent: tuple[str, str] | None) -> bool:
    """Whether an agent (kind, name) is among a rule's sourceAgents."""
    if not sources:
        return True
    if agent is None:
        return False
    kind, name = agent
    return f"{kind}/{name}" in sources or f"*/{name}" in sources


def host_matches(pattern: str, name: str) -> bool:
    if pattern.startswith("*."):
        return name.endswith(pattern[1:]) and name != pattern[2:]
    return fnmatch.fnmatchcase(name, pattern) if "*" in pattern else name == pattern


def _ports(match: dict[str, Any], problems: list[str], where: str) -> tuple[int, ...] | None:
    ranges = match.get("ports")
    if not ranges:
        return None
    out: list[int] = []
    for r in ranges:
        first, last = int(r["port"]), int(r.get("endPort") or r["port"])
        if last - first + 1 > MAX_PORTS_PER_RANGE:
            problems.append(f"{where}: port range {first}-{last} is wider than "
                            f"{MAX_PORTS_PER_RANGE} ports; only its first "
                            f"{MAX_PORTS_PER_RANGE} are routed")
            last = first + MAX_PORTS_PER_RANGE - 1
        out.extend(range(first, last + 1))
    return tuple(sorted(set(out)))


def plan(gateway: dict[str, Any], routes: list[dict[str, Any]]) -> GatewayRoutes:
    name = gateway["metadata"]["name"]
    namespace = gateway["metadata"].get("namespace", "")
    out = GatewayRoutes()
    spec = gateway.get("spec") or {}
    terminating = [li.get("port") for li in spec.get("listeners") or []
                   if li.get("protocol") == "HTTPS" or (
                       li.get("protocol") == "TLS"
                       and (li.get("tls") or {}).get("mode", "Terminate") == "Terminate")]
    http_ports = [li.get("port") for li in spec.get("listeners") or []
                  if li.get("protocol") == "HTTP"]
    tls = spec.get("upstreamTLS") or {}
    for alias in tls.get("hostAliases") or []:
        out.aliases[alias["hostname"].lower()] = alias["address"]
    for route in routes:
        parents = route["spec"].get("parentRefs") or []
        if not any(p.get("name") == name and p.get("namespace", namespace) == namespace
                   and p.get("kind", "EgressGateway") == "EgressGateway" for p in parents):
            continue
        where = f"EgressL4Route {route['metadata']['name']}"
        for rule in route["spec"].get("rules") or []:
            for match in rule.get("matches") or []:
                udp = match.get("protocol") == "UDP"
                ports = _ports(match, out.problems, where)
                hostnames = tuple(h.lower() for h in match.get("destinationHostnames") or [])
                cidrs = tuple(match.get("destinationCIDRs") or ())
                terminate = frozenset(
                    p for p in ports or () if hostnames
                    and match.get("protocol") in (None, "TLS")
                    and any(t is None or t == p for t in terminating))
                http = frozenset(
                    p for p in ports or () if hostnames and not udp
                    and match.get("protocol") in (None, "TCP")
                    and any(h is None or h == p for h in http_ports))
                sources = tuple(f"{a.get('kind') or '*'}/{a['name']}"
                                for a in match.get("sourceAgents") or [])
                if cidrs or hostnames:
                    out.rules.append(L4Rule(cidrs, hostnames, ports, route["metadata"]["name"],
                                            frozenset() if udp else terminate, udp, http,
                                            sources))
    return out
