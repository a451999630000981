"""The console API (``/console/api/...``): what the pages show, as JSON, read from the
stored resources, the Invocation ledger, the telemetry store's aggregates and the worker
registry. Every route needs the session cookie (:mod:`clrk.console.app` checks it before
any of these runs); docs/console.md lists the routes and their answers.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import yaml
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from clrk.api.agent_state import agent_state
from clrk.api.agents import AgentTemplate, EgressRef, gateway_of
from clrk.api.meta import without_managed_fields
from clrk.apiserver.storage import Key, Obj, Store
from clrk.controllers.revisions import LABEL_AGENT, LABEL_KIND
from clrk.scheduler.registry import WorkerRegistry
from clrk.telemetry import aggregates
from clrk.telemetry.invocations import InvocationLedger
from clrk.telemetry.logs import AgentLogs, Query
from clrk.telemetry.pricing import LIST_PRICES, LIST_PRICES_AS_OF, Price, PriceTable

GROUP = "clrk.apoxy.dev"
AGENT_PLURALS = {"TaskAgent": "taskagents", "DaemonAgent": "daemonagents"}
ROUTE_PLURALS = ("aiproviderroutes", "mcproutes", "egressl4routes")
POLICY_PLURALS = ("credentialinjectionpolicies", "ratelimitpolicies", "egressdenypolicies",
                  "loggingpolicies", "fallbackroutingpolicies")
HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}
LOG_LINES = 500  # an invocation page's stdout and stderr, at most


class TokenUse(Protocol):
    """Tokens a route used on a UTC day through a gateway (the token budgets' counters)."""

    def used(self, namespace: str, route: str, gateway: str, day: str) -> int: ...


class BadRequest(Exception):
    """A query parameter the console API cannot use; answered 400 with this message."""


class NotFound(Exception):
    """What the path names does not exist; answered 404 with this message."""


@dataclass(frozen=True)
class Sources:
    """What the console reads."""

    objects: Store
    ledger: InvocationLedger
    logs: AgentLogs
    registry: WorkerRegistry
    tokens: TokenUse


def _window(request: Request) -> aggregates.Window:
    try:
        return aggregates.window(request.query_params.get("window"))
    except ValueError as err:
        raise BadRequest(str(err)) from None


def _conditions(obj: Obj) -> list[dict[str, Any]]:
    """An object's conditions, a route's per parent gateway included."""
    status = obj.get("status") or {}
    found = [dict(c) for c in status.get("conditions") or []]
    for parent in status.get("parents") or []:
        ref = (parent.get("parentRef") or {}).get("name", "")
        found += [{**c, "parent": ref} for c in parent.get("conditions") or []]
    return found


def _ref(obj: Obj) -> dict[str, Any]:
    md = obj["metadata"]
    return {"namespace": md.get("namespace", ""), "name": md["name"],
            "created": md.get("creationTimestamp", "")}


def _gateway_of(obj: Obj) -> str | None:
    """A stored agent's gateway, by the rule the workers route its traffic by."""
    spec = obj.get("spec") or {}
    template = AgentTemplate.model_validate(spec["template"])
    refs = [EgressRef.model_validate(r) for r in spec.get("egressRefs") or []]
    return gateway_of(template, refs)


def _yaml(obj: Obj) -> str:
    return yaml.safe_dump(without_managed_fields(obj), sort_keys=False)


def _running(ledger: InvocationLedger, namespace: str | None = None,
             kind: str | None = None, name: str | None = None) -> list[dict[str, Any]]:
    out = []
    for inv in ledger.running():
        md, spec, st = inv["metadata"], inv["spec"], inv.get("status") or {}
        if (namespace and md["namespace"] != namespace) or (
                kind and spec.get("agentKind") != kind) or (
                name and spec.get("agentName") != name):
            continue
        out.append({"name": md["name"], "namespace": md["namespace"],
                    "agentKind": spec.get("agentKind"), "agentName": spec.get("agentName"),
                    "traceId": spec.get("traceId", ""), "phase": st.get("phase", "Pending"),
                    "startTime": st.get("startTime") or md.get("creationTimestamp"),
                    "durationMs": None})
    return out[::-1]


class ConsoleAPI:
    def __init__(self, sources: Sources) -> None:
        self.s = sources

    def routes(self) -> list[Route]:
        handlers: dict[str, Callable[[Request], Awaitable[Any]]] = {
            "/overview": self.overview, "/agents": self.agents,
            "/agents/{namespace}/{kind}/{name}": self.agent,
            "/invocations": self.invocations,
            "/invocations/{namespace}/{name}": self.invocation,
            "/spans/{trace}/{span}": self.span, "/spend": self.spend,
            "/egress": self.egress, "/workers": self.workers, "/live": self.live,
            "/prices": self.prices,
        }
        return [Route(path, _json(handler), methods=["GET"])
                for path, handler in handlers.items()]

    def _agents(self) -> list[Obj]:
        return [o for plural in AGENT_PLURALS.values()
                for o in self.s.objects.list_objects(GROUP, plural)]

    async def overview(self, request: Request) -> dict[str, Any]:
        w = _window(request)
        out = await asyncio.to_thread(aggregates.overview, self.s.ledger.store, w)
        running = _running(self.s.ledger)
        out["running"] = len(running)
        out["recent"] = running[:10] + await asyncio.to_thread(
            aggregates.invocations, self.s.ledger.store, limit=10)
        return out

    async def agents(self, request: Request) -> dict[str, Any]:
        w = _window(request)
        stats = {(r["namespace"], r["kind"], r["name"]): r for r in await asyncio.to_thread(
            aggregates.agent_stats, self.s.ledger.store, w)}
        items = []
        for obj in self._agents():
            md, spec, st = obj["metadata"], obj["spec"], obj.get("status") or {}
            key = (md["namespace"], obj["kind"], md["name"])
            state = agent_state(obj)
            items.append({**_ref(obj), "kind": obj["kind"], "phase": state.phase,
                          "reason": state.reason, "process": st.get("phase"),
                          "revision": st.get("servingRevisionName"),
                          "pinned": bool(spec.get("pinnedRevisionName")),
                          "pool": spec.get("workerPoolRef"), "gateway": _gateway_of(obj),
                          "image": (spec.get("template") or {}).get("spec", {}).get("image"),
                          "stats": stats.get(key)})
        return {"window": w.name, "items": items}

    async def agent(self, request: Request) -> dict[str, Any]:
        ns, kind, name = (request.path_params[k] for k in ("namespace", "kind", "name"))
        plural = AGENT_PLURALS.get(kind)
        obj = self.s.objects.get(Key(GROUP, plural, ns, name)) if plural else None
        if obj is None:
            raise NotFound(f"no {kind} {ns}/{name}")
        w = _window(request)
        revisions = [
            {**_ref(r), "image": r["spec"]["template"]["spec"].get("image"),
             "generation": r["spec"].get("generation"),
             "conditions": _conditions(r)}
            for r in self.s.objects.list_objects(GROUP, "agentsandboxrevisions", ns)
            if (r["metadata"].get("labels") or {}).get(LABEL_AGENT) == name
            and r["metadata"]["labels"].get(LABEL_KIND) == kind]
        revisions.sort(key=lambda r: r["generation"] or 0, reverse=True)
        gateway_name = _gateway_of(obj)
        gateway = self.s.objects.get(Key(GROUP, "egressgateways", ns, gateway_name)) \
            if gateway_name else None
        routes = [{**_ref(r), "kind": r["kind"], "conditions": _conditions(r)}
                  for plural in ROUTE_PLURALS
                  for r in self.s.objects.list_objects(GROUP, plural, ns)
                  if gateway_name in [p.get("name") for p in r["spec"].get("parentRefs") or []]]
        events = [{"type": e.get("type"), "reason": e.get("reason"),
                   "message": e.get("message"), "count": e.get("count"),
                   "lastTimestamp": e.get("lastTimestamp") or e.get("eventTime")}
                  for e in self.s.objects.list_objects("", "events", ns)
                  if (e.get("involvedObject") or {}).get("name") == name
                  and (e.get("involvedObject") or {}).get("kind") == kind]
        events.sort(key=lambda e: e["lastTimestamp"] or "", reverse=True)
        store = self.s.ledger.store
        usage = await asyncio.to_thread(aggregates.agent_usage, store, ns, kind, name, w)
        finished = await asyncio.to_thread(aggregates.invocations, store, namespace=ns,
                                           agent_kind=kind, agent_name=name, limit=50)
        state = agent_state(obj)
        return {"agent": {**_ref(obj), "kind": kind, "phase": state.phase,
                          "reason": state.reason, "message": state.message,
                          "status": obj.get("status") or {}, "spec": obj["spec"]},
                "window": w.name, "stats": usage,
                "invocations": _running(self.s.ledger, ns, kind, name) + finished,
                "revisions": revisions,
                "pinnedRevision": obj["spec"].get("pinnedRevisionName"),
                "gateway": {**_ref(gateway), "conditions": _conditions(gateway)}
                if gateway else None,
                "routes": routes, "events": events[:100], "conditions": _conditions(obj),
                "yaml": _yaml(obj)}

    async def invocations(self, request: Request) -> dict[str, Any]:
        q = request.query_params
        try:
            limit = max(1, min(500, int(q.get("limit") or 100)))
        except ValueError:
            raise BadRequest(f"limit {q.get('limit')!r} is not a number") from None
        ns, name = q.get("namespace") or None, q.get("agent") or None
        finished = await asyncio.to_thread(aggregates.invocations, self.s.ledger.store,
                                           namespace=ns, agent_name=name, limit=limit)
        return {"items": _running(self.s.ledger, ns, None, name) + finished}

    async def invocation(self, request: Request) -> dict[str, Any]:
        ns, name = request.path_params["namespace"], request.path_params["name"]
        inv = self.s.ledger.get(ns, name)
        if inv is None:
            raise NotFound(f"no invocation {ns}/{name}")
        spec, md = inv["spec"], inv["metadata"]
        created = dt.datetime.fromisoformat(md["creationTimestamp"].replace("Z", "+00:00"))
        since = created.replace(tzinfo=None) - dt.timedelta(hours=1)
        store = self.s.ledger.store
        spans = await asyncio.to_thread(aggregates.trace, store, spec.get("traceId", ""),
                                        since) if spec.get("traceId") else []
        lines = await asyncio.to_thread(self.s.logs.read, Query(
            ns, spec.get("agentKind", ""), spec.get("agentName", ""), invocation=name,
            limit=LOG_LINES))
        return {"invocation": inv, "spans": spans,
                "output": [{"stream": ln.stream, "message": ln.message,
                            "time": ln.to_json().get("timestamp")} for ln in lines],
                "outputTruncated": len(lines) == LOG_LINES}

    async def span(self, request: Request) -> dict[str, Any]:
        found = await asyncio.to_thread(aggregates.span, self.s.ledger.store,
                                        request.path_params["trace"],
                                        request.path_params["span"])
        if found is None:
            raise NotFound("no such span")
        return found

    async def spend(self, request: Request) -> dict[str, Any]:
        w = _window(request)
        out = await asyncio.to_thread(aggregates.spend, self.s.ledger.store, w)
        out["budgets"] = self._budgets()
        return out

    def _budgets(self) -> list[dict[str, Any]]:
        """Each AIProviderRoute rule's token budget, with what each gateway has spent of
        its day limit today."""
        day = dt.datetime.now(dt.UTC).date().isoformat()
        out = []
        for route in self.s.objects.list_objects(GROUP, "aiproviderroutes"):
            md = route["metadata"]
            for i, rule in enumerate(route["spec"].get("rules") or []):
                budget = rule.get("tokenBudget")
                if not budget:
                    continue
                for parent in route["spec"].get("parentRefs") or []:
                    gw = str(parent.get("name", ""))
                    out.append({"namespace": md["namespace"], "route": md["name"],
                                "rule": i, "gateway": gw, "day": day,
                                "usedToday": self.s.tokens.used(md["namespace"], md["name"],
                                                                gw, day),
                                "maxTokensPerDay": budget.get("maxTokensPerDay"),
                                "maxTokensPerExecution": budget.get("maxTokensPerExecution")})
        return out

    async def egress(self, request: Request) -> dict[str, Any]:
        w = _window(request)

        def listed(plural: str) -> list[dict[str, Any]]:
            return [{**_ref(o), "kind": o["kind"], "conditions": _conditions(o),
                     "parents": [p.get("name") for p in o["spec"].get("parentRefs") or []],
                     "spec": o["spec"]}
                    for o in self.s.objects.list_objects(GROUP, plural)]

        gateways = [{**g, "listeners": g["spec"].get("listeners") or []}
                    for g in listed("egressgateways")]
        return {"window": w.name, "gateways": gateways,
                "routes": [r for p in ROUTE_PLURALS for r in listed(p)],
                "policies": [r for p in POLICY_PLURALS for r in listed(p)],
                "hosts": await asyncio.to_thread(aggregates.hosts, self.s.ledger.store, w)}

    async def workers(self, request: Request) -> dict[str, Any]:
        pools = [{**_ref(p), "replicas": p["spec"].get("replicas"),
                  "maxExecutionsPerWorker": p["spec"].get("maxExecutionsPerWorker"),
                  "status": p.get("status") or {}, "conditions": _conditions(p)}
                 for p in self.s.objects.list_objects(GROUP, "workerpools")]
        stale = self.s.registry.stale_after
        workers = [{"name": w.name, "namespace": w.namespace, "pool": w.pool,
                    "capacity": w.capacity, "inFlight": w.in_flight,
                    "warmSandboxes": w.warm_sandboxes, "warmRevisions": w.warm_revisions,
                    "cachedImages": w.cached_images, "draining": w.draining,
                    "heartbeatAgeSeconds": round(age, 1), "stale": age >= stale}
                   for w, age in self.s.registry.workers()]
        return {"pools": pools, "workers": sorted(workers, key=lambda w: w["name"])}

    async def live(self, request: Request) -> dict[str, Any]:
        """What was recorded after ``after`` (the previous answer's ``cursor``), and the
        invocations running now."""
        after_text = request.query_params.get("after")
        now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
        try:
            after = dt.datetime.fromisoformat(after_text.rstrip("Z")) if after_text \
                else now - dt.timedelta(minutes=10)
        except ValueError:
            raise BadRequest(f"after {after_text!r} is not an ISO 8601 time") from None
        items = await asyncio.to_thread(aggregates.recorded_since, self.s.ledger.store,
                                        after)
        cursor = items[0]["recorded"] if items else aggregates.iso(after)
        return {"cursor": cursor, "items": items, "running": _running(self.s.ledger)}

    async def prices(self, request: Request) -> dict[str, Any]:
        """The shipped list prices and the ModelPrice overrides, which win."""
        table = PriceTable.from_objects(self.s.objects.list_objects(GROUP, "modelprices"))

        def listed(source: str, prices: dict[str, dict[str, Price]]) -> list[dict[str, Any]]:
            return [{"source": source, "provider": provider, "model": model,
                     "input": str(p.input), "output": str(p.output),
                     **{k: str(v) if v is not None else None for k, v in (
                         ("cacheRead", p.cache_read), ("cacheWrite", p.cache_write),
                         ("reasoning", p.reasoning))}}
                    for provider, models in prices.items() for model, p in models.items()]

        return {"listPricesAsOf": LIST_PRICES_AS_OF, "unit": "USD per million tokens",
                "items": listed("ModelPrice", table.overrides) + listed("list", LIST_PRICES)}


def _json(handler: Callable[[Request], Awaitable[Any]]
          ) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        try:
            return JSONResponse(await handler(request), headers=HEADERS)
        except BadRequest as err:
            return JSONResponse({"error": str(err)}, 400, headers=HEADERS)
        except NotFound as err:
            return JSONResponse({"error": str(err)}, 404, headers=HEADERS)
    return endpoint
