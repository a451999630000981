"""The ``/logs`` subresource of TaskAgents and DaemonAgents, and the reports workers
send for DaemonAgent runs (``POST daemonagents/NAME/runs`` and ``.../logs``) and for
the spans and logs an agent exports itself (``POST .../traces`` and ``.../logs`` with
an OTLP protobuf body and ``?invocation=``; see ``clrk.telemetry.agent_otlp``).

``GET .../{taskagents|daemonagents}/NAME/logs`` answers an ``AgentLogList``; with
``follow=true`` it streams one JSON record per line, first what is stored, then live
lines, ending when the followed invocation ends (or at ``timeoutSeconds``).
Parameters: invocation, stream (stdout|stderr), since and until (RFC 3339 or a
duration back from now), limit, tailLines, continue, follow, timeoutSeconds.

``GET .../NAME/usage?window=1h|24h|7d&limit=N`` answers an ``AgentUsage``: the agent's
invocations, latencies, tokens, cost and denials in the window, and its newest finished
invocations with their tokens and cost (what ``clrk agents get`` shows).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import secrets
from collections.abc import AsyncIterator
from typing import Any

from clrk.api.pricing import ModelPrice
from clrk.apiserver.errors import APIError, not_found
from clrk.apiserver.handlers import API, Reply, Request, flag, int_param
from clrk.apiserver.storage import Key
from clrk.telemetry import agent_otlp, aggregates, connections, otlp_http, pricing
from clrk.telemetry.invocations import TERMINAL, InvocationLedger
from clrk.telemetry.logs import (
    AgentLogs,
    LogLine,
    Query,
    Source,
    decode_continue,
    encode_continue,
    parse_time,
)
from clrk.telemetry.otlp_decode import PROTOBUF, OTLPError, Signal

GROUP = "clrk.apoxy.dev"
KINDS = {"taskagents": "TaskAgent", "daemonagents": "DaemonAgent"}
PARAMS = {"invocation", "stream", "since", "until", "limit", "tailLines", "continue",
          "follow", "timeoutSeconds", "pretty"}


def parse_query(req: Request) -> Query:
    unknown = sorted(set(req.query) - PARAMS)
    if unknown:
        raise APIError(400, f"unknown logs parameter(s) {', '.join(unknown)}; known: "
                       f"{', '.join(sorted(PARAMS))}")
    q = Query(req.namespace or "", KINDS[req.served.resource], req.name or "",
              invocation=req.query.get("invocation") or None,
              limit=int_param(req.query, "limit"), tail=int_param(req.query, "tailLines"))
    stream = req.query.get("stream") or None
    if stream not in (None, "stdout", "stderr"):
        raise APIError(400, f"invalid stream {stream!r}: use stdout or stderr")
    q.stream = stream
    try:
        if req.query.get("since"):
            q.since_ns = parse_time(req.query["since"])
        if req.query.get("until"):
            q.until_ns = parse_time(req.query["until"])
        if req.query.get("continue"):
            q.after_ns = decode_continue(req.query["continue"])
    except ValueError as err:
        raise APIError(400, str(err)) from None
    if q.tail and (q.limit or q.after_ns is not None):
        raise APIError(400, "tailLines cannot be combined with limit or continue")
    return q


def _daemon_source(ledger: InvocationLedger, req: Request, invocation: str) -> Source:
    inv = ledger.get(req.namespace or "", invocation)
    if inv is None or inv["spec"].get("agentName") != req.name \
            or inv["spec"].get("agentKind") != "DaemonAgent":
        raise not_found("invocations", invocation, GROUP)
    spec = inv["spec"]
    return Source(req.namespace or "", "DaemonAgent", req.name or "", invocation,
                  spec.get("traceId", ""), spec.get("spanId", ""), spec.get("revision"),
                  (inv.get("status") or {}).get("worker"))


def _identity(ledger: InvocationLedger, req: Request) -> agent_otlp.Identity:
    """The invocation a worker forwards an agent's own export for (``?invocation=``),
    which must be of the agent in the path."""
    kind, name = KINDS[req.served.resource], req.name or ""
    invocation = req.query.get("invocation", "")
    inv = ledger.get(req.namespace or "", invocation) if invocation else None
    if inv is None or inv["spec"].get("agentName") != name \
            or inv["spec"].get("agentKind") != kind:
        raise not_found("invocations", invocation, GROUP)
    spec = inv["spec"]
    return agent_otlp.Identity(req.namespace or "", kind, name, invocation,
                               spec.get("traceId", ""), spec.get("spanId", ""))


async def _agent_export(ledger: InvocationLedger, req: Request, signal: Signal) -> Reply:
    """An agent's own OTLP export request, forwarded by its worker: stamped and stored."""
    if req.content_type.split(";", 1)[0].strip().lower() != PROTOBUF:
        raise APIError(415, f"an agent's {signal} come as {PROTOBUF} (OTLP)",
                       "UnsupportedMediaType")
    who = _identity(ledger, req)
    try:
        stored = await asyncio.to_thread(agent_otlp.store, ledger.store, signal, req.body,
                                         req.content_type, who)
    except OTLPError as err:
        raise APIError(400, str(err)) from None
    return Reply(body={"invocation": who.invocation, "stored": stored})


def install(api: API, ledger: InvocationLedger, logs: AgentLogs) -> None:
    async def runs(req: Request) -> Reply:
        """A worker starts or ends a DaemonAgent run."""
        if req.method != "POST":
            raise APIError(405, "runs accepts POST only", "MethodNotAllowed")
        doc = await req.json_object()
        ns, name = req.namespace or "", req.name or ""
        if doc.get("action") == "begin":
            if api.store.get(Key(GROUP, "daemonagents", ns, name)) is None:
                raise not_found("daemonagents", name, GROUP)
            started = ledger.begin(ns, "DaemonAgent", name, revision=doc.get("revision"),
                                   trigger="daemon", execution_id=secrets.token_hex(8))
            ledger.transition(ns, started.name, "Running", worker=doc.get("worker"))
            return Reply(body={"invocation": started.name, "traceId": started.trace_id,
                               "spanId": started.span_id})
        if doc.get("action") == "end":
            source = _daemon_source(ledger, req, str(doc.get("invocation", "")))
            phase = doc.get("phase")
            if phase not in ("Succeeded", "Failed", "Timeout"):
                raise APIError(400, f"invalid phase {phase!r}")
            logs.close(source)
            ledger.finish(ns, source.invocation, phase, exitCode=doc.get("exitCode"),
                          reason=doc.get("reason") or None)
            return Reply(body={"invocation": source.invocation})
        raise APIError(400, f"invalid action {doc.get('action')!r}: use begin or end")

    async def handler(req: Request) -> Reply:
        if req.method == "POST" and req.content_type.startswith(PROTOBUF):
            return await _agent_export(ledger, req, "logs")
        if req.method == "POST" and req.served.resource == "daemonagents":
            doc = await req.json_object()
            source = _daemon_source(ledger, req, str(doc.get("invocation", "")))
            for record in doc.get("records") or []:
                stream = record.get("stream")
                if stream not in ("stdout", "stderr"):
                    raise APIError(400, f"invalid stream {stream!r}")
                logs.write(source, stream, base64.b64decode(record.get("data", "")))
            return Reply(body={"invocation": source.invocation})
        if req.method != "GET":
            raise APIError(405, "logs accepts GET only", "MethodNotAllowed")
        if api.store.get(Key(GROUP, req.served.resource, req.namespace or "",
                             req.name or "")) is None and not req.query.get("invocation"):
            raise not_found(req.served.resource, req.name or "", GROUP)
        q = parse_query(req)
        if q.invocation is not None:
            inv = ledger.get(q.namespace, q.invocation)
            if inv is None or inv["spec"].get("agentName") != q.agent_name:
                raise not_found("invocations", q.invocation, GROUP)
        if flag(req.query.get("follow")):
            timeout = float(int_param(req.query, "timeoutSeconds")) or None
            return Reply(stream=_follow(ledger, logs, q, timeout),
                         media_type="application/x-ndjson")
        lines = logs.read(q)
        meta: dict[str, Any] = {}
        if q.limit and len(lines) == q.limit:
            meta["continue"] = encode_continue(lines[-1].timestamp_ns)
        return Reply(body={"apiVersion": f"{GROUP}/v1alpha1", "kind": "AgentLogList",
                           "metadata": meta, "items": [ln.to_json() for ln in lines]})

    async def traces(req: Request) -> Reply:
        if req.method == "POST":
            return await _agent_export(ledger, req, "traces")
        if req.method != "GET":
            raise APIError(405, "traces accepts GET and POST only", "MethodNotAllowed")
        if api.store.get(Key(GROUP, req.served.resource, req.namespace or "",
                             req.name or "")) is None:
            raise not_found(req.served.resource, req.name or "", GROUP)
        items = connections.spans_of(ledger.store, req.namespace or "",
                                     KINDS[req.served.resource], req.name or "",
                                     req.query.get("invocation") or None,
                                     int_param(req.query, "limit") or 1000)
        return Reply(body={"apiVersion": f"{GROUP}/v1alpha1", "kind": "AgentSpanList",
                           "metadata": {}, "items": items})

    async def usage(req: Request) -> Reply:
        """The agent's invocations, tokens, cost and denials over ``window`` (1h, 24h or
        7d), and its ``limit`` newest finished invocations with theirs."""
        if req.method != "GET":
            raise APIError(405, "usage accepts GET only", "MethodNotAllowed")
        ns, name = req.namespace or "", req.name or ""
        if api.store.get(Key(GROUP, req.served.resource, ns, name)) is None:
            raise not_found(req.served.resource, name, GROUP)
        try:
            w = aggregates.window(req.query.get("window"))
        except ValueError as err:
            raise APIError(400, str(err)) from None
        kind, limit = KINDS[req.served.resource], int_param(req.query, "limit") or 20
        totals = await asyncio.to_thread(aggregates.agent_usage, ledger.store, ns, kind,
                                         name, w)
        recent = await asyncio.to_thread(aggregates.invocations, ledger.store, namespace=ns,
                                         agent_kind=kind, agent_name=name, limit=limit)
        return Reply(body={"apiVersion": f"{GROUP}/v1alpha1", "kind": "AgentUsage",
                           "window": w.name, "totals": totals, "invocations": recent})

    async def egress_connections(req: Request) -> Reply:
        """A worker reports the connections a gateway saw (from Envoy's access log)."""
        if req.method != "POST":
            raise APIError(405, "connections accepts POST only", "MethodNotAllowed")
        # A gateway deleted since is no reason to drop its last connections' records.
        items = (await req.json_object()).get("items")
        if not isinstance(items, list):
            raise APIError(400, "items must be a list")
        for i, item in enumerate(items):
            if not isinstance(item, dict):
                raise APIError(400, f"items[{i}] must be an object")
        prices = pricing.PriceTable.from_objects(
            api.store.list_objects(GROUP, ModelPrice.kind_info.plural))
        stored = connections.record(ledger.store, req.namespace or "", req.name or "", items,
                                    prices)
        return Reply(body={"stored": stored})

    for plural in KINDS:
        api.subresources[(GROUP, plural, "logs")] = handler
        api.subresources[(GROUP, plural, "traces")] = traces
        api.subresources[(GROUP, plural, "usage")] = usage
        for sub in ("logs", "traces"):
            api.body_limits[(GROUP, plural, sub)] = otlp_http.MAX_BODY
    api.subresources[(GROUP, "daemonagents", "runs")] = runs
    api.subresources[(GROUP, "egressgateways", "connections")] = egress_connections


def _line(ln: LogLine) -> bytes:
    return json.dumps(ln.to_json(), separators=(",", ":")).encode() + b"\n"


async def _follow(ledger: InvocationLedger, logs: AgentLogs, q: Query,
                  timeout: float | None) -> AsyncIterator[bytes]:
    queue, stop = logs.follow(Query(q.namespace, q.agent_kind, q.agent_name, q.invocation,
                                    q.stream, q.since_ns, q.until_ns))
    try:
        last = 0
        for ln in logs.read(q):
            last = ln.timestamp_ns
            yield _line(ln)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout if timeout else None
        while True:
            if q.invocation is not None:
                inv = ledger.get(q.namespace, q.invocation)
                if inv is None or inv["status"]["phase"] in TERMINAL:
                    # Lines are written before the phase ends, so the queue holds the rest.
                    while not queue.empty():
                        got = queue.get_nowait()
                        if got is not None and got.timestamp_ns > last:
                            yield _line(got)
                    return
            wait = 0.5
            if deadline is not None:
                wait = min(wait, deadline - loop.time())
                if wait <= 0:
                    return
            with contextlib.suppress(TimeoutError):
                got = await asyncio.wait_for(queue.get(), wait)
                if got is None:
                    return
                if got.timestamp_ns > last:
                    last = got.timestamp_ns
                    yield _line(got)
    finally:
        stop()
