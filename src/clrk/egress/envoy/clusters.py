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


def endpoint_cluster(name: str, address: str, port: int, **extra: Any) -> dict[str, Any]:
    """A cluster of one endpoint, ``address:port``; ``extra`` adds cluster fields (the
    transport socket, protocol options)."""
    cluster: dict[str, Any] = {
        "name": name, "connect_timeout": "5s",
        "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [
            {"endpoint": {"address": {"socket_address": {
                "address": address, "port_value": port}}}}]}]},
        **extra}
    if is_address(address):
        cluster["type"] = "STATIC"
    else:
        cluster.update(type="LOGICAL_DNS", dns_lookup_family="V4_PREFERRED",
                       wait_for_warm_on_init=False)
    return cluster
