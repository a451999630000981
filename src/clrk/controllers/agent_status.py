"""Conditions of TaskAgents and DaemonAgents: Accepted, WorkerPoolReady, EgressConfigured."""

from __future__ import annotations

from typing import Any

from lightkube import AsyncClient

from clrk.api.agents import DaemonAgent, TaskAgent
from clrk.api.gateway import EgressGateway
from clrk.api.workerpool import WorkerPool
from clrk.client import get_or_none, resource_class
from clrk.controllers.conditions import set_condition

Agent = TaskAgent | DaemonAgent


def gateway_refs(agent: Agent) -> list[str]:
    refs = [r.gateway_ref for r in agent.spec.egress_refs or []]
    refs += [r.gateway_ref for r in agent.spec.template.spec.egress_refs or []]
    return sorted(set(refs))


async def conditions(client: AsyncClient, agent: Agent,
                     current: list[dict[str, Any]]) -> list[dict[str, Any]]:
    md = agent.metadata
    ns, gen = md["namespace"], md.get("generation")
    conds = set_condition(current, "Accepted", True, "Valid", "the spec is valid", gen)
    pool_name = agent.spec.worker_pool_ref
    pool = await get_or_none(client, resource_class(WorkerPool), pool_name, ns)
    if pool is None:
        conds = set_condition(conds, "WorkerPoolReady", False, "WorkerPoolNotFound",
                              f'WorkerPool "{pool_name}" does not exist in namespace {ns}', gen)
    else:
        ready = next((c for c in (pool.get("status") or {}).get("conditions") or []
                      if c.get("type") == "Ready"), None)
        if ready and ready.get("status") == "True":
            conds = set_condition(conds, "WorkerPoolReady", True, "WorkerPoolReady",
                                  f'WorkerPool "{pool_name}" is ready', gen)
        else:
            why = (ready or {}).get("message") or "it has no ready workers"
            conds = set_condition(conds, "WorkerPoolReady", False, "WorkerPoolNotReady",
                                  f'WorkerPool "{pool_name}" is not ready: {why}', gen)
    refs = gateway_refs(agent)
    gateways = resource_class(EgressGateway)
    missing = [r for r in refs if await get_or_none(client, gateways, r, ns) is None]
    if not refs:
        conds = set_condition(conds, "EgressConfigured", True, "NoEgress",
                              "no egress gateway is referenced: all egress is denied", gen)
    elif missing:
        conds = set_condition(conds, "EgressConfigured", False, "GatewayNotFound",
                              "EgressGateway not found: " + ", ".join(missing), gen)
    else:
        conds = set_condition(conds, "EgressConfigured", True, "GatewaysFound",
                              "egress goes through " + ", ".join(refs), gen)
    return conds
