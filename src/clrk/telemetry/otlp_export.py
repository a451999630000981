"""Best-effort re-export of egress records to an EgressGateway's ``spec.otlp.endpoint``
(OTLP/HTTP with JSON bodies, the gateway's ``otlp.headers`` on every request).

Records wait in a bounded queue (full: the newest are dropped and counted), go out in
batches, and a failed batch is retried a few times with backoff, then dropped. Nothing
here ever waits on the network for the traffic that produced the record.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import datetime as dt
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

log = logging.getLogger("clrk.telemetry.export")
MAX_QUEUE = 10_000
BATCH = 512
RETRIES = 3
_EPOCH = dt.datetime(1970, 1, 1)


def _ns(t: dt.datetime) -> str:
    d = t.replace(tzinfo=None) - _EPOCH  # in integers: a float loses the microseconds
    return str((d.days * 86400 + d.seconds) * 10**9 + d.microseconds * 1000)


def _attrs(m: dict[str, str]) -> list[dict[str, Any]]:
    return [{"key": k, "value": {"stringValue": str(v)}} for k, v in m.items()]


# A record's resource attributes and scope name: what its export groups it under.
Resource = tuple[tuple[tuple[str, str], ...], str]
_KINDS = {"Internal": 1, "Server": 2, "Client": 3, "Producer": 4, "Consumer": 5}


def _resource(service: str, attrs: dict[str, str], scope: str) -> Resource:
    return tuple(sorted({**attrs, "service.name": service}.items())), scope


def span_json(row: list[Any]) -> tuple[Resource, dict[str, Any]]:
    """(resource, OTLP span) from an otel_traces row."""
    (start, trace, span, parent, state, name, kind, service, res, scope, _ver, attrs,
     duration, status, message, ev_times, ev_names, ev_attrs) = row[:18]
    end = start + dt.timedelta(microseconds=duration / 1000)
    return _resource(service, res, scope), {
        "traceId": trace, "spanId": span, "parentSpanId": parent, "traceState": state,
        "name": name, "kind": _KINDS.get(kind, 0), "startTimeUnixNano": _ns(start),
        "endTimeUnixNano": _ns(end), "attributes": _attrs(attrs),
        "events": [{"timeUnixNano": _ns(t), "name": n, "attributes": _attrs(a)}
                   for t, n, a in zip(ev_times, ev_names, ev_attrs, strict=False)],
        "status": {"code": {"Error": 2, "Ok": 1}.get(status, 0), "message": message}}


def log_json(row: list[Any]) -> tuple[Resource, dict[str, Any]]:
    (ts, trace, span, flags, sev_text, sev_num, service, body, _res_url, res, _scope_url,
     scope, _ver, _scope_attrs, attrs, event) = row[:16]
    return _resource(service, res, scope), {"timeUnixNano": _ns(ts), "severityNumber": sev_num,
                     "severityText": sev_text, "body": {"stringValue": body},
                     "attributes": _attrs(attrs), "traceId": trace, "spanId": span,
                     "flags": flags, "eventName": event}


def _grouped(items: list[tuple[Resource, dict[str, Any]]], key: str, scope_key: str,
             namespace: str) -> dict[str, Any]:
    """One OTLP export body: the items under their resource (``service.namespace`` set
    to ``namespace`` where the row has none)."""
    by_resource: dict[Resource, list[dict[str, Any]]] = {}
    for group, item in items:
        by_resource.setdefault(group, []).append(item)
    out = []
    for (pairs, scope), values in by_resource.items():
        attrs = dict(pairs)
        if namespace:
            attrs.setdefault("service.namespace", namespace)
        out.append({"resource": {"attributes": _attrs(attrs)},
                    scope_key: [{"scope": {"name": scope},
                                 ("spans" if key == "resourceSpans" else "logRecords"):
                                 values}]})
    return {key: out}


@dataclass(frozen=True)
class Target:
    endpoint: str
    headers: tuple[tuple[str, str], ...]
    namespace: str


@dataclass
class OTLPExporter:
    client: httpx.AsyncClient = field(default_factory=lambda: httpx.AsyncClient(timeout=5))
    dropped: int = 0
    sent: int = 0
    # A deque: records are offered from the event loop and from the threads that compute
    # writes (appends and pops of a deque are atomic).
    _queue: collections.deque[tuple[Target, str, Any]] = field(
        default_factory=collections.deque)

    def offer(self, target: Target, spans: Sequence[Sequence[Any]],
              logs: Sequence[Sequence[Any]]) -> None:
        """Queue records for ``target`` without waiting; drop them when the queue is full."""
        for kind, rows in (("traces", spans), ("logs", logs)):
            for row in rows:
                if len(self._queue) >= MAX_QUEUE:
                    self.dropped += 1
                    if self.dropped % 1000 == 1:
                        log.warning("OTLP export queue full: %d records dropped so far",
                                    self.dropped)
                    continue
                self._queue.append((target, kind, row))

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            if not self._queue:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 0.2)
                continue
            batch: list[tuple[Target, str, Any]] = []
            while self._queue and len(batch) < BATCH:
                batch.append(self._queue.popleft())
            await self._send(batch)
        await self.client.aclose()

    async def _send(self, batch: list[tuple[Target, str, Any]]) -> None:
        groups: dict[tuple[Target, str], list[Any]] = {}
        for target, kind, row in batch:
            groups.setdefault((target, kind), []).append(row)
        for (target, kind), rows in groups.items():
            if kind == "traces":
                body = _grouped([span_json(r) for r in rows], "resourceSpans", "scopeSpans",
                                target.namespace)
            else:
                body = _grouped([log_json(r) for r in rows], "resourceLogs", "scopeLogs",
                                target.namespace)
            url = target.endpoint.rstrip("/") + f"/v1/{kind}"
            for attempt in range(RETRIES + 1):
                try:
                    r = await self.client.post(url, json=body, headers=dict(target.headers))
                    if r.status_code < 300:
                        self.sent += len(rows)
                        break
                    retry = r.status_code in (429, 502, 503, 504)
                    failure = f"HTTP {r.status_code}"
                except httpx.HTTPError as err:
                    retry, failure = True, str(err) or type(err).__name__
                if not retry or attempt == RETRIES:
                    self.dropped += len(rows)
                    log.warning("OTLP export to %s failed (%s): %d records dropped", url,
                                failure, len(rows))
                    break
                await asyncio.sleep(0.2 * 2 ** attempt)
