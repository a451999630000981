"""Best-effort re-export of egress records to an EgressGateway's ``spec.otlp.endpoint``
(OTLP/HTTP with JSON bodies, the gateway's ``otlp.headers`` on every request).

Records wait in a bounded queue (full: the newest are dropped and counted), go out in
batches, and a failed batch is retried a few times with backoff, then dropped. Nothing
here ever waits on the network for the traffic that produced the record.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from dataclasses import dataclass, field
from typing import Any

import httpx

log = logging.getLogger("clrk.telemetry.export")
MAX_QUEUE = 10_000
BATCH = 512
RETRIES = 3
_EPOCH = dt.datetime(1970, 1, 1)


def _ns(t: dt.datetime) -> str:
    return str(int((t.replace(tzinfo=None) - _EPOCH).total_seconds() * 1e9))


def _attrs(m: dict[str, str]) -> list[dict[str, Any]]:
    return [{"key": k, "value": {"stringValue": str(v)}} for k, v in m.items()]


def span_json(row: list[Any]) -> tuple[str, dict[str, Any]]:
    """(service name, OTLP span) from an otel_traces row."""
    (start, trace, span, parent, state, name, _kind, service, _res, _scope, _ver, attrs,
     duration, status, message, ev_times, ev_names, ev_attrs) = row[:18]
    end = start + dt.timedelta(microseconds=duration / 1000)
    return service, {
        "traceId": trace, "spanId": span, "parentSpanId": parent, "traceState": state,
        "name": name, "kind": 3, "startTimeUnixNano": _ns(start),
        "endTimeUnixNano": _ns(end), "attributes": _attrs(attrs),
        "events": [{"timeUnixNano": _ns(t), "name": n, "attributes": _attrs(a)}
                   for t, n, a in zip(ev_times, ev_names, ev_attrs, strict=False)],
        "status": {"code": 2 if status == "Error" else 1, "message": message}}


def log_json(row: list[Any]) -> tuple[str, dict[str, Any]]:
    (ts, trace, span, flags, sev_text, sev_num, service, body, _res_url, _res, _scope_url,
     _scope, _ver, _scope_attrs, attrs, event) = row[:16]
    return service, {"timeUnixNano": _ns(ts), "severityNumber": sev_num,
                     "severityText": sev_text, "body": {"stringValue": body},
                     "attributes": _attrs(attrs), "traceId": trace, "spanId": span,
                     "flags": flags, "eventName": event}


def _grouped(items: list[tuple[str, dict[str, Any]]], key: str, scope_key: str,
             namespace: str) -> dict[str, Any]:
    by_service: dict[str, list[dict[str, Any]]] = {}
    for service, item in items:
        by_service.setdefault(service, []).append(item)
    return {key: [{"resource": {"attributes": _attrs({"service.name": s,
                                                      "service.namespace": namespace})},
                   scope_key: [{"scope": {"name": "clrk.egress"},
                                ("spans" if key == "resourceSpans" else "logRecords"): v}]}
                  for s, v in by_service.items()]}


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
    _queue: asyncio.Queue[tuple[Target, str, Any]] = field(
        default_factory=lambda: asyncio.Queue(MAX_QUEUE))

    def offer(self, target: Target, spans: list[list[Any]], logs: list[list[Any]]) -> None:
        """Queue records for ``target`` without waiting; drop them when the queue is full."""
        for kind, rows in (("traces", spans), ("logs", logs)):
            for row in rows:
                try:
                    self._queue.put_nowait((target, kind, row))
                except asyncio.QueueFull:
                    self.dropped += 1
                    if self.dropped % 1000 == 1:
                        log.warning("OTLP export queue full: %d records dropped so far",
                                    self.dropped)

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                first = await asyncio.wait_for(self._queue.get(), 0.5)
                batch = [first]
                while len(batch) < BATCH and not self._queue.empty():
                    batch.append(self._queue.get_nowait())
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
