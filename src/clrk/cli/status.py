"""`clrk status`: one screen on the cluster the kubeconfig points at: whether its API
server answers (where, which version), its worker pools (ready of desired workers,
their Ready condition), its agents (phase, why when not Ready, the revision they run)
and its egress gateways (their conditions). Every namespace unless -n is given."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import httpx
import typer

from clrk.api.agent_state import agent_state
from clrk.api.gateway import EgressGateway
from clrk.api.workerpool import WorkerPool
from clrk.cli import output
from clrk.cli.agent_api import KINDS, http
from clrk.cli.context import Options
from clrk.cli.errors import CLIError
from clrk.client import resource_class, to_dict


@dataclass
class Overview:
    """What `clrk status` reports, as printed by ``-o json|yaml``."""

    server: str
    version: str
    context: str
    namespace: str  # "" for every namespace
    worker_pools: list[dict[str, Any]] = field(default_factory=list)
    agents: list[dict[str, Any]] = field(default_factory=list)
    egress_gateways: list[dict[str, Any]] = field(default_factory=list)

    def document(self) -> dict[str, Any]:
        """The overview with the API's camelCase keys."""
        return {"server": self.server, "version": self.version, "context": self.context,
                "namespace": self.namespace, "workerPools": self.worker_pools,
                "agents": self.agents, "egressGateways": self.egress_gateways}


def _condition(obj: dict[str, Any], kind: str) -> dict[str, str]:
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c.get("type") == kind:
            return {"status": str(c.get("status", "")), "reason": str(c.get("reason", "")),
                    "message": str(c.get("message", ""))}
    return {"status": "Unknown", "reason": "NotReported",
            "message": "the controllers have not reported it yet"}


def _version(opts: Options, server: str) -> str:
    """The API server's version (its /version); a server out of reach is an error."""
    try:
        with http(opts, 10) as (client, base):
            r = client.get(base + "/version")
    except httpx.HTTPError as err:
        raise CLIError(f"the API server at {server} cannot be reached: {err}") from None
    if r.status_code != 200:
        raise CLIError(f"the API server at {server} answered /version with HTTP "
                       f"{r.status_code}")
    try:
        return str(r.json().get("gitVersion") or "unknown")
    except ValueError:
        return "unknown"


def overview(opts: Options) -> Overview:
    config = opts.kube_config().get(context_name=opts.context)
    if config is None:
        raise CLIError("the kubeconfig has no current context: pass --context")
    server = str(config.cluster.server)
    version = _version(opts, server)
    client = opts.client()
    where = opts.namespace or "*"
    out = Overview(server, version, config.context_name, opts.namespace or "")
    for o in client.list(resource_class(WorkerPool), namespace=where):
        d = to_dict(o)
        status = d.get("status") or {}
        out.worker_pools.append({
            "namespace": d["metadata"].get("namespace", ""), "name": d["metadata"]["name"],
            "readyReplicas": status.get("readyReplicas") or 0,
            "replicas": (d.get("spec") or {}).get("replicas", 0),
            "ready": _condition(d, "Ready")})
    for cls in KINDS:
        for o in client.list(resource_class(cls), namespace=where):
            d = to_dict(o)
            state = agent_state(d)
            out.agents.append({
                "namespace": d["metadata"].get("namespace", ""), "kind": cls.kind_info.kind,
                "name": d["metadata"]["name"], "phase": state.phase, "reason": state.reason,
                "message": state.message,
                "revision": (d.get("status") or {}).get("servingRevisionName") or ""})
    for o in client.list(resource_class(EgressGateway), namespace=where):
        d = to_dict(o)
        out.egress_gateways.append({
            "namespace": d["metadata"].get("namespace", ""), "name": d["metadata"]["name"],
            "conditions": [{"type": str(c.get("type", "")), "status": str(c.get("status", "")),
                            "reason": str(c.get("reason", "")),
                            "message": str(c.get("message", ""))}
                           for c in (d.get("status") or {}).get("conditions") or []]})
    return out


def _section(title: str, header: list[str], body: list[list[str]], empty: str) -> None:
    print()
    print(title)
    if body:
        output.print_table(header, body)
    else:
        print(f"  {empty}")


def _why(reason: str, message: str, width: int = 60) -> str:
    """A condition's reason and message, the message cut to keep the screen readable."""
    if len(message) > width:
        message = message[:width - 3] + "..."
    return f"{reason}: {message}" if message else reason


def _print(ov: Overview) -> None:
    where = f"namespace {ov.namespace}" if ov.namespace else "every namespace"
    print(f"API server:  {ov.server} ({ov.version}), reachable")
    print(f"Context:     {ov.context}, {where}")
    _section("Worker pools", ["NAMESPACE", "NAME", "WORKERS", "READY", "REASON"], [
        [p["namespace"], p["name"], f"{p['readyReplicas']}/{p['replicas']}",
         p["ready"]["status"], "" if p["ready"]["status"] == "True"
         else _why(p["ready"]["reason"], p["ready"]["message"])]
        for p in ov.worker_pools], "none")
    _section("Agents", ["NAMESPACE", "KIND", "NAME", "PHASE", "REVISION", "REASON"], [
        [a["namespace"], a["kind"], a["name"], a["phase"], a["revision"] or "<none>",
         _why(a["reason"], a["message"])] for a in ov.agents], "none")
    rows = []
    for g in ov.egress_gateways:
        bad = [c for c in g["conditions"] if c["status"] != "True"]
        rows.append([g["namespace"], g["name"],
                     " ".join(f"{c['type']}={c['status']}" for c in g["conditions"])
                     or "<none>", _why(bad[0]["reason"], bad[0]["message"]) if bad else ""])
    _section("Egress gateways", ["NAMESPACE", "NAME", "CONDITIONS", "REASON"], rows, "none")


def status(ctx: typer.Context, output_format: output.OutputOpt = None) -> None:
    """Show the cluster at a glance: API server, worker pools, agents, egress gateways."""
    opts: Options = ctx.obj
    fmt = output.output_format(output_format)
    ov = overview(opts)
    if fmt is not None:
        print(output.dump_doc(ov.document(), fmt), end="")
        return
    _print(ov)
