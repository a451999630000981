"""The one way an Envoy cluster for a single upstream address is built: STATIC for an IP
address, LOGICAL_DNS for a hostname.

A DNS cluster does not hold up Envoy's start (``wait_for_warm_on_init: false``): on a
restart every cluster of every gateway exists at once, and Envoy would otherwise bring up
no listener until each hostname's first lookup ended, so one slow or unreachable resolver
would refuse every sandbox of the worker (measured: a minute of refused connections
after an Envoy restart under load). A route whose name is still resolving fails alone,
with 503, until the lookup ends.
"""

from __future__ import annotations

import ipaddress
from typing import Any


def is_address(target: str) -> bool:
    try:
        ipaddress.ip_address(target)
    except ValueError:
        return False
    return True


def endpoint_cluster(name: str, address: str, port: int, hostname: str | None = None,
                     **extra: Any) -> dict[str, Any]:
    """A cluster of one endpoint, ``address:port``; ``hostname`` is the endpoint's name
    (what ``auto_host_rewrite`` puts in Host, even for an address); ``extra`` adds
    cluster fields (the transport socket, protocol options)."""
    endpoint: dict[str, Any] = {"address": {"socket_address": {
        "address": address, "port_value": port}}}
    if hostname:
        endpoint["hostname"] = hostname
    cluster: dict[str, Any] = {
        "name": name, "connect_timeout": "5s",
        "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [
            {"endpoint": endpoint}]}]},
        **extra}
    if is_address(address):
        cluster["type"] = "STATIC"
    else:
        cluster.update(type="LOGICAL_DNS", dns_lookup_family="V4_PREFERRED",
                       wait_for_warm_on_init=False)
    return cluster


def aggregate_cluster(name: str, clusters: list[str]) -> dict[str, Any]:
    """Envoy's aggregate cluster: ``clusters`` in priority order. A request goes to the
    first with a healthy host; a retry with the previous_priorities retry priority goes
    to the next (a FallbackRoutingPolicy across Backends)."""
    return {"name": name, "connect_timeout": "5s", "lb_policy": "CLUSTER_PROVIDED",
            "cluster_type": {"name": "envoy.clusters.aggregate", "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.clusters.aggregate.v3."
                         "ClusterConfig", "clusters": clusters}}}


def outlier_detection(consecutive_errors: int, interval_s: float,
                      base_ejection_s: float) -> dict[str, Any]:
    """Ejection of an upstream after ``consecutive_errors`` failures in a row (5xx
    answers and connect failures alike); its cluster then has no healthy host and an
    aggregate cluster sends the next requests to the next one at once."""
    return {"outlier_detection": {
        "consecutive_5xx": consecutive_errors, "interval": f"{interval_s:.3f}s",
        "base_ejection_time": f"{base_ejection_s:.3f}s", "max_ejection_percent": 100,
        "consecutive_gateway_failure": consecutive_errors,
        "enforcing_consecutive_gateway_failure": 100}}
