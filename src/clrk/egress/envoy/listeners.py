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

from dataclasses import dataclass
from pathlib import Path
from typing import Any

ORIGINAL_DST = "clrk_original_dst"
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


def listener(gw: GatewayListener) -> dict[str, Any]:
    target = ORIGINAL_DST if gw.default_policy == "allow-all" else DENY
    return {
        "name": gw.listener_name,
        "address": {"socket_address": {"address": gw.address, "port_value": gw.port}},
        "listener_filters": [
            _listener_filter("original_dst", "OriginalDst"),
            _listener_filter("tls_inspector", "TlsInspector"),
            _listener_filter("http_inspector", "HttpInspector"),
        ],
        "listener_filters_timeout": "2s",
        "continue_on_listener_filters_timeout": True,
        "default_filter_chain": {
            "name": f"default-{gw.default_policy}",
            "filters": [_tcp_proxy(f"egw_{gw.namespace}_{gw.name}", target, gw.access_log)]},
    }


def base_clusters() -> list[dict[str, Any]]:
    return [
        {"name": ORIGINAL_DST, "type": "ORIGINAL_DST", "lb_policy": "CLUSTER_PROVIDED",
         "connect_timeout": "5s"},
        # No endpoints: a connection routed here is refused (deny, and logged).
        {"name": DENY, "type": "STATIC", "connect_timeout": "1s",
         "load_assignment": {"cluster_name": DENY, "endpoints": []}},
    ]
