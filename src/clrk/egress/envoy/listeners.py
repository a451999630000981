"""Envoy listeners and clusters for EgressGateways.

Each gateway gets one listener on the worker; the sandboxes that use the gateway have
their TCP redirected to it. The listener recovers the original destination
(``original_dst``) and peeks at SNI and protocol (``tls_inspector``,
``http_inspector``) so routes can pick a filter chain; what no route matches goes by
``defaultPolicy``: ``allow-all`` dials the original destination, ``deny-all`` (the
default, fail closed) goes to a cluster with no endpoints, which refuses it. Every
connection is written to the gateway's access log.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clrk.egress.envoy.clusters import endpoint_cluster
from clrk.egress.l4 import GatewayRoutes, host_matches

ORIGINAL_DST = "clrk_original_dst"
# What Envoy may hold of one connection's data: a JSON answer it meters is held whole
# until its end (json_to_metadata), up to the 32 MiB a buffered request may hold.
BUFFER_LIMIT = 32 << 20
DENY = "clrk_deny"
_T = "type.googleapis.com/envoy.extensions"

ACCESS_LOG_FORMAT = {
    "start_time": "%START_TIME%",
    "source": "%DOWNSTREAM_REMOTE_ADDRESS%",
    "destination": "%DOWNSTREAM_LOCAL_ADDRESS%",
    "sni": "%REQUESTED_SERVER_NAME%",
    "upstream": "%UPSTREAM_HOST%",
    "cluster": "%UPSTREAM_CLUSTER%",
    "bytes_received": "%BYTES_RECEIVED%",
    "bytes_sent": "%BYTES_SENT%",
    "duration_ms": "%DURATION%",
    "flags": "%RESPONSE_FLAGS%",
    "chain": "%FILTER_CHAIN_NAME%",
}


@dataclass(frozen=True)
class GatewayListener:
    namespace: str
    name: str
    port: int  # where the worker redirects this gateway's sandboxes
    default_policy: str  # "deny-all" | "allow-all"
    access_log: Path
    address: str = "0.0.0.0"

    @property
    def listener_name(self) -> str:
        return f"egw/{self.namespace}/{self.name}"


def _listener_filter(name: str, kind: str) -> dict[str, Any]:
    return {"name": f"envoy.filters.listener.{name}",
            "typed_config": {"@type": f"{_T}.filters.listener.{name}.v3.{kind}"}}


def _tcp_proxy(stat: str, cluster: str, access_log: Path) -> dict[str, Any]:
    return {"name": "envoy.filters.network.tcp_proxy", "typed_config": {
        "@type": f"{_T}.filters.network.tcp_proxy.v3.TcpProxy",
        "stat_prefix": stat, "cluster": cluster,
        "access_log": [{"name": "envoy.access_loggers.file", "typed_config": {
            "@type": f"{_T}.access_loggers.file.v3.FileAccessLog",
            "path": str(access_log),
            "log_format": {"json_format": ACCESS_LOG_FORMAT}}}]}}


def _authz(gateway: str, chain: str, sources: tuple[str, ...]) -> dict[str, Any]:
    """Only the route's sourceAgents may open the connection: the policy service checks
    the sandbox's address (its agent) once per connection."""
    return {"name": "envoy.filters.network.ext_authz", "typed_config": {
        "@type": f"{_T}.filters.network.ext_authz.v3.ExtAuthz",
        "stat_prefix": "clrk_sources", "failure_mode_allow": False,
        "grpc_service": {"envoy_grpc": {"cluster_name": "clrk_policy"}, "timeout": "2s",
                         "initial_metadata": [
                             {"key": "x-clrk-gateway", "value": gateway},
                             {"key": "x-clrk-chain", "value": chain},
                             {"key": "x-clrk-sources", "value": ",".join(sources)}]}}}


def _chain(name: str, prefix: str, port: int | None, stat: str, cluster: str,
           log: Path, sources: tuple[str, ...] = (), gateway: str = "") -> dict[str, Any]:
    net = ipaddress.ip_network(prefix, strict=False)
    match: dict[str, Any] = {"prefix_ranges": [{"address_prefix": str(net.network_address),
                                                "prefix_len": net.prefixlen}]}
    if port is not None:
        match["destination_port"] = port
    authz = [_authz(gateway, name, sources)] if sources else []
    return {"name": name, "filter_chain_match": match,
            "filters": [*authz, _tcp_proxy(stat, cluster, log)]}


def _dial(address: str) -> dict[str, Any]:
    """Send the connection to ``address`` on the port the sandbox dialled (the original
    destination cluster takes its target from this filter state)."""
    host = f"[{address}]" if ":" in address else address
    return {"name": "envoy.filters.network.set_filter_state", "typed_config": {
        "@type": f"{_T}.filters.network.set_filter_state.v3.Config",
        "on_new_connection": [{
            "object_key": "envoy.network.transport_socket.original_dst_address",
            "format_string": {"text_format_source": {
                "inline_string": f"{host}:%DOWNSTREAM_LOCAL_PORT%"}}}]}}


def host_cluster(hostname: str, port: int) -> str:
    return f"host/{hostname}/{port}"


def listener(gw: GatewayListener, routes: GatewayRoutes | None = None,
             vips: dict[str, str] | None = None,
             terminated: list[dict[str, Any]] | None = None,
             denied: frozenset[str] = frozenset(),
             addresses: dict[str, str] | None = None) -> dict[str, Any]:
    """The gateway's listener: a filter chain per routed destination and port (CIDRs to
    where the sandbox dialled, hostnames' virtual addresses to the host), then the
    default policy for the rest."""
    target = ORIGINAL_DST if gw.default_policy == "allow-all" else DENY
    stat = f"egw_{gw.namespace}_{gw.name}"
    chains: dict[tuple[str, int | None], dict[str, Any]] = {}
    tcp_rules = [r for r in routes.rules if not r.udp] if routes else []
    # Who may use a destination: everyone if any rule for it names no sourceAgents.
    sources: dict[tuple[str, int | None], set[str] | None] = {}
    for rule in tcp_rules:
        for cidr in rule.cidrs:
            for port in rule.ports or (None,):
                key = (str(ipaddress.ip_network(cidr, strict=False)), port)
                have = sources.get(key, set())
                sources[key] = None if have is None or not rule.sources else \
                    have | set(rule.sources)
    gateway = f"{gw.namespace}/{gw.name}"
    for rule in tcp_rules:
        # An EgressDenyPolicy on the route turns it off: its connections are reset.
        routed_to = DENY if rule.route in denied else ORIGINAL_DST
        for cidr in rule.cidrs:
            for port in rule.ports or (None,):
                key = (str(ipaddress.ip_network(cidr, strict=False)), port)
                chains.setdefault(key, _chain(f"cidr {key[0]}:{port or '*'}", key[0], port,
                                              stat, routed_to, gw.access_log,
                                              tuple(sorted(sources.get(key) or ())),
                                              gateway))
    for hostname, vip in sorted((vips or {}).items()):
        if routes is None:
            break
        for port in sorted(routes.host_ports(hostname)):
            named = [r for r in tcp_rules if port in (r.ports or ())
                     and any(host_matches(p, hostname) for p in r.hostnames)]
            rule = named[0]
            allowed = () if any(not r.sources for r in named) else tuple(sorted(
                {s for r in named for s in r.sources}))
            chains.setdefault((f"{vip}/32", port), _chain(
                f"host {hostname}:{port}", f"{vip}/32", port, stat,
                DENY if rule.route in denied else host_cluster(hostname, port),
                gw.access_log, allowed, gateway))
    for hostname, vip in sorted((vips or {}).items()):
        if routes is None or not routes.every_port(hostname):
            continue
        # Any port: the host's address (or its alias's), on the port the sandbox dialled;
        # port-specific chains, more specific, win.
        named = [r for r in tcp_rules if r.ports is None
                 and any(host_matches(p, hostname) for p in r.hostnames)]
        address = (addresses or {}).get(hostname)  # None: not resolved yet, refused
        allowed = () if any(not r.sources for r in named) else tuple(sorted(
            {s for r in named for s in r.sources}))
        chain = _chain(f"host {hostname}:*", f"{vip}/32", None, stat,
                       DENY if named[0].route in denied or address is None else ORIGINAL_DST,
                       gw.access_log, allowed, gateway)
        if address is not None:
            chain["filters"].insert(len(chain["filters"]) - 1, _dial(address))
        chains.setdefault((f"{vip}/32", None), chain)
    return {
        "name": gw.listener_name,
        "address": {"socket_address": {"address": gw.address, "port_value": gw.port}},
        "per_connection_buffer_limit_bytes": BUFFER_LIMIT,
        "listener_filters": [
            _listener_filter("original_dst", "OriginalDst"),
            _listener_filter("tls_inspector", "TlsInspector"),
            _listener_filter("http_inspector", "HttpInspector"),
        ],
        "listener_filters_timeout": "2s",
        "continue_on_listener_filters_timeout": True,
        "filter_chains": [*(terminated or []), *chains.values()],
        "default_filter_chain": {
            "name": f"default-{gw.default_policy}",
            "filters": [_tcp_proxy(stat, target, gw.access_log)]},
    }


def host_clusters(routes: GatewayRoutes, vips: dict[str, str]) -> list[dict[str, Any]]:
    """One cluster per routed hostname and port: the host itself, or its alias."""
    out = []
    for hostname in sorted(vips):
        for port in sorted(routes.host_ports(hostname)):
            target, dial_port = routes.dial(hostname, port)
            out.append(endpoint_cluster(host_cluster(hostname, port), target, dial_port))
    return out


def base_clusters() -> list[dict[str, Any]]:
    return [
        {"name": ORIGINAL_DST, "type": "ORIGINAL_DST", "lb_policy": "CLUSTER_PROVIDED",
         "connect_timeout": "5s"},
        # No endpoints: a connection routed here is refused (deny, and logged).
        {"name": DENY, "type": "STATIC", "connect_timeout": "1s",
         "load_assignment": {"cluster_name": DENY, "endpoints": []}},

    ]
