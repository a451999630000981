"""Filter chains that terminate TLS for a routed hostname (a leaf signed by the
gateway's CA), run HTTP through the policy service (ext_proc) and Envoy's router, and
clusters that re-encrypt to the real upstream, verified against the system roots plus
the gateway's additional trust bundle.

Bodies go to the policy service only on chains that need them (AI and MCP hosts):
requests buffered (the model, the tool, the budget are in there), responses streamed
(token usage arrives at the end of a stream).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clrk.egress.leaves import Leaf

POLICY = "clrk_policy"
_T = "type.googleapis.com/envoy.extensions"
MAX_REQUEST_BODY = 32 << 20  # what a buffered request may hold (larger: 413 from Envoy)


@dataclass(frozen=True)
class TerminatedHost:
    gateway: str  # namespace/name
    hostname: str
    vip: str
    port: int
    leaf: Leaf
    bodies: bool
    cluster: str


def _ext_proc(host: TerminatedHost) -> dict[str, Any]:
    body = "BUFFERED" if host.bodies else "NONE"
    return {"name": "envoy.filters.http.ext_proc", "typed_config": {
        "@type": f"{_T}.filters.http.ext_proc.v3.ExternalProcessor",
        "grpc_service": {"envoy_grpc": {"cluster_name": POLICY}, "timeout": "10s",
                         "initial_metadata": [
                             {"key": "x-clrk-gateway", "value": host.gateway},
                             {"key": "x-clrk-host", "value": host.hostname},
                             {"key": "x-clrk-port", "value": str(host.port)}]},
        "failure_mode_allow": False,
        "message_timeout": "10s",
        "processing_mode": {
            "request_header_mode": "SEND", "response_header_mode": "SEND",
            "request_body_mode": body,
            "response_body_mode": "STREAMED" if host.bodies else "NONE",
            "request_trailer_mode": "SKIP", "response_trailer_mode": "SKIP"},
        "request_attributes": ["source.address"],
    }}


def terminated_chain(host: TerminatedHost) -> dict[str, Any]:
    net = ipaddress.ip_network(f"{host.vip}/32")
    return {
        "name": f"terminate {host.hostname}:{host.port}",
        "filter_chain_match": {
            "prefix_ranges": [{"address_prefix": str(net.network_address),
                               "prefix_len": 32}],
            "destination_port": host.port, "transport_protocol": "tls"},
        "transport_socket": {"name": "envoy.transport_sockets.tls", "typed_config": {
            "@type": f"{_T}.transport_sockets.tls.v3.DownstreamTlsContext",
            "common_tls_context": {
                "alpn_protocols": ["h2", "http/1.1"],
                "tls_certificates": [{"certificate_chain": {"filename": str(host.leaf.cert)},
                                      "private_key": {"filename": str(host.leaf.key)}}]}}},
        "filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": {
            "@type": f"{_T}.filters.network.http_connection_manager.v3.HttpConnectionManager",
            "stat_prefix": f"mitm_{host.hostname}", "codec_type": "AUTO",
            "stream_idle_timeout": "300s",
            # The cluster may arrive a moment after the listener (separate xDS files):
            # accept the route now rather than reject the whole listener.
            "route_config": {"name": f"{host.gateway}/{host.hostname}",
                             "validate_clusters": False, "virtual_hosts": [{
                "name": host.hostname, "domains": ["*"],
                "routes": [{"match": {"prefix": "/"},
                            "request_body_buffer_limit": MAX_REQUEST_BODY,
                            "route": {"cluster": host.cluster, "timeout": "0s"}}]}]},
            "http_filters": [_ext_proc(host), {
                "name": "envoy.filters.http.router",
                "typed_config": {"@type": f"{_T}.filters.http.router.v3.Router"}}]}}],
    }


def _http_options(upstream_h2: bool) -> dict[str, Any]:
    explicit: dict[str, Any] = {"http2_protocol_options": {}} if upstream_h2 else {
        "http_protocol_options": {}}
    return {"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
        "@type": f"{_T}.upstreams.http.v3.HttpProtocolOptions",
        "explicit_http_config": explicit}}


def tls_upstream_cluster(name: str, hostname: str, address: str, port: int,
                         trust: Path) -> dict[str, Any]:
    """The real upstream for a terminated host: TLS again, SNI and name checked."""
    try:
        ipaddress.ip_address(address)
        kind = "STATIC"
    except ValueError:
        kind = "LOGICAL_DNS"
    return {
        "name": name, "type": kind, "connect_timeout": "5s",
        "dns_lookup_family": "V4_PREFERRED",
        "typed_extension_protocol_options": _http_options(False),
        "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [
            {"endpoint": {"address": {"socket_address": {
                "address": address, "port_value": port}}}}]}]},
        "transport_socket": {"name": "envoy.transport_sockets.tls", "typed_config": {
            "@type": f"{_T}.transport_sockets.tls.v3.UpstreamTlsContext",
            "sni": hostname,
            "common_tls_context": {
                "alpn_protocols": ["http/1.1"],
                "validation_context": {
                    "trusted_ca": {"filename": str(trust)},
                    "match_typed_subject_alt_names": [{
                        "san_type": "DNS", "matcher": {"exact": hostname}}]}}}},
    }


def policy_cluster(socket: Path) -> dict[str, Any]:
    return {"name": POLICY, "type": "STATIC", "connect_timeout": "1s",
            "typed_extension_protocol_options": _http_options(True),
            "load_assignment": {"cluster_name": POLICY, "endpoints": [{"lb_endpoints": [
                {"endpoint": {"address": {"pipe": {"path": str(socket)}}}}]}]}}
