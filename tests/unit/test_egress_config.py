"""Envoy configuration from EgressGateways and EgressL4Routes (pure functions)."""

from __future__ import annotations

from pathlib import Path

from clrk.egress import l4
from clrk.egress.envoy.listeners import (
    DENY,
    ORIGINAL_DST,
    GatewayListener,
    host_clusters,
    listener,
)


def gateway(name: str = "gw", **spec: object) -> dict[str, object]:
    return {"metadata": {"name": name, "namespace": "ns"}, "spec": spec}


def route(name: str, parent: str, *matches: dict[str, object]) -> dict[str, object]:
    return {"metadata": {"name": name, "namespace": "ns"},
            "spec": {"parentRefs": [{"name": parent}], "rules": [{"matches": list(matches)}]}}


def test_plan_takes_only_this_gateways_routes_and_names_problems() -> None:
    plan = l4.plan(gateway(upstreamTLS={"hostAliases": [
        {"hostname": "API.internal", "address": "127.0.0.1:9"}]}), [
        route("mine", "gw", {"destinationCIDRs": ["10.1.0.0/16"], "ports": [{"port": 443}]},
              {"destinationHostnames": ["*.example.com"],
               "ports": [{"port": 8000, "endPort": 8001}]},
              {"destinationHostnames": ["noports.example"]},
              {"protocol": "UDP", "destinationCIDRs": ["10.2.0.0/16"]},
              {"destinationCIDRs": ["10.3.0.0/16"],
               "ports": [{"port": 1000, "endPort": 2000}]}),
        route("theirs", "other", {"destinationCIDRs": ["0.0.0.0/0"]})])
    assert plan.aliases == {"api.internal": "127.0.0.1:9"}
    assert [r.cidrs for r in plan.rules] == [("10.1.0.0/16",), (), (), ("10.2.0.0/16",),
                                              ("10.3.0.0/16",)]
    assert [r.udp for r in plan.rules] == [False, False, False, True, False]
    assert plan.udp_rule("10.2.3.4", 53, None) is plan.rules[3]  # UDP: the relay's
    assert plan.udp_rule("10.1.3.4", 443, None) is None
    assert plan.host_ports("a.example.com") == {8000, 8001}
    assert plan.host_ports("example.com") == set()  # *. needs a label in front
    # A hostname without ports: every port (DNS answers it; no port-specific chain).
    assert plan.host_ports("noports.example") == set()
    assert plan.every_port("noports.example") and plan.routed("noports.example")
    assert len(plan.rules[4].ports or ()) == l4.MAX_PORTS_PER_RANGE
    assert "wider than" in " ".join(plan.problems)


def test_listener_chains_and_clusters(tmp_path: Path) -> None:
    plan = l4.plan(gateway(upstreamTLS={"hostAliases": [
        {"hostname": "svc.internal", "address": "127.0.0.1:9000"},
        {"hostname": "named.internal", "address": "backend.example"}]}), [
        route("r", "gw", {"destinationCIDRs": ["10.1.2.3/32", "10.1.2.3"],
                          "ports": [{"port": 80}]},
              {"destinationHostnames": ["svc.internal", "named.internal"],
               "ports": [{"port": 443}]})])
    vips = {"svc.internal": "198.18.0.1", "named.internal": "198.18.0.2"}
    doc = listener(GatewayListener("ns", "gw", 15000, "deny-all", tmp_path / "a.log"),
                   plan, vips)
    names = [c["name"] for c in doc["filter_chains"]]
    assert names == ["cidr 10.1.2.3/32:80", "host named.internal:443", "host svc.internal:443"]
    assert doc["default_filter_chain"]["filters"][0]["typed_config"]["cluster"] == DENY
    assert doc["filter_chains"][0]["filters"][0]["typed_config"]["cluster"] == ORIGINAL_DST
    clusters = {c["name"]: c for c in host_clusters(plan, vips)}
    svc = clusters["host/svc.internal/443"]
    assert svc["type"] == "STATIC"
    assert svc["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"][
        "address"]["socket_address"] == {"address": "127.0.0.1", "port_value": 9000}
    named = clusters["host/named.internal/443"]
    assert named["type"] == "LOGICAL_DNS"
    assert named["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"][
        "address"]["socket_address"] == {"address": "backend.example", "port_value": 443}


def test_deny_all_stays_deny_all_next_to_routes() -> None:
    """A gateway's default chain follows its defaultPolicy whatever its routes say (a
    route's own target never leaks into the default)."""
    from pathlib import Path

    from clrk.egress.envoy.listeners import DENY, GatewayListener, listener
    from clrk.egress.l4 import GatewayRoutes, L4Rule

    routes = GatewayRoutes(rules=[L4Rule(("198.51.100.10/32",), (), (9000,), "r")])
    for denied in (frozenset(), frozenset({"r"})):
        doc = listener(GatewayListener("ns", "gw", 15000, "deny-all", Path("/dev/null")),
                       routes, {}, [], denied)
        assert doc["default_filter_chain"]["filters"][0]["typed_config"]["cluster"] == DENY
