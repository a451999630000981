"""Egress connections as telemetry: one span (child of the invocation's span) and one
summary log record per connection a gateway saw, with the agent's identity."""

from __future__ import annotations

import datetime as dt
import secrets
from typing import Any

from clrk.telemetry import pricing
from clrk.telemetry.client import TelemetryStore

SUMMARY_LABELS = (("gen_ai.provider.name", "provider"), ("gen_ai.request.model", "model"),
                  ("gen_ai.usage.input_tokens", "input_tokens"),
                  ("gen_ai.usage.output_tokens", "output_tokens"),
                  ("gen_ai.tool.name", "tool"), ("clrk.route", "route"))


def call_summary(name: str, status: str, duration_ms: float, sent: object, received: object,
                 attrs: dict[str, str], denied: str | None = None) -> str:
    """The one-line body of an HTTP call's log record, the line the quickstart shows:
    ``POST api.anthropic.com/v1/messages 200 540ms req=312B resp=1024B provider=…``."""
    summary = f"{name} {status} {duration_ms:.0f}ms req={sent}B resp={received}B"
    for key, label in SUMMARY_LABELS:
        if attrs.get(key):
            summary += f" {label}={attrs[key]}"
    return summary + (f" denied: {denied}" if denied else "")


def _time(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).replace(tzinfo=None)


def record(store: TelemetryStore, namespace: str, gateway: str,
           items: list[dict[str, Any]], prices: pricing.PriceTable = pricing.LIST) -> int:
    """``items``: access-log records plus ``attribution`` (or None). Returns how many
    were stored; malformed ones are skipped. LLM calls are priced with ``prices``."""
    spans, logs = rows(namespace, gateway, items, prices)
    store.insert("otel_traces", spans)
    store.insert("otel_logs", logs)
    return len(spans)


def rows(namespace: str, gateway: str, items: list[dict[str, Any]],
         prices: pricing.PriceTable = pricing.LIST
         ) -> tuple[list[list[Any]], list[list[Any]]]:
    """The otel_traces and otel_logs rows for ``items`` (what is stored and what is
    re-exported are the same records, but for the price table each was priced with)."""
    spans: list[list[Any]] = []
    logs: list[list[Any]] = []
    for item in items:
        at = len(spans), len(logs)
        try:
            _item(item, namespace, gateway, spans, logs, prices)
        except (KeyError, ValueError, TypeError, AttributeError, OverflowError):
            del spans[at[0]:], logs[at[1]:]  # a malformed item is skipped whole
    return spans, logs


def _item(item: dict[str, Any], namespace: str, gateway: str, spans: list[list[Any]],
          logs: list[list[Any]], prices: pricing.PriceTable) -> None:
    if item.get("kind") == "dns":
        _lookup(item, namespace, spans, logs)
    elif item.get("kind") == "http":
        _request(item, namespace, spans, logs, prices)
    elif item.get("kind") == "http-log":
        _envoy_request(item, namespace, gateway, spans, logs, prices)
    else:
        _connection(item, namespace, gateway, spans, logs)


def _connection(item: dict[str, Any], namespace: str, gateway: str, spans: list[list[Any]],
                logs: list[list[Any]]) -> None:
    """One TCP or UDP connection (an Envoy tcp_proxy access-log line, or the UDP relay's)."""
    start = _time(str(item["start_time"]))
    duration = int(float(item.get("duration_ms") or 0) * 1_000_000)
    destination = str(item.get("destination") or "")
    host, _, port = destination.rpartition(":")
    denied = item.get("cluster") == "clrk_deny"
    transport = "udp" if item.get("kind") == "udp" else "tcp"
    attrs = {"network.transport": transport, "server.address": item.get("sni") or host,
             "server.port": port, "source.address": str(item.get("source") or ""),
             "clrk.gateway": f"{namespace}/{gateway}",
             "clrk.decision": "deny" if denied else "allow",
             "clrk.cluster": str(item.get("cluster") or ""),
             "clrk.route": str(item.get("chain") or ""),
             "clrk.bytes.sent": str(item.get("bytes_received") or 0),
             "clrk.bytes.received": str(item.get("bytes_sent") or 0)}
    if denied:
        attrs["clrk.deny_reason"] = str(item.get("deny_reason") or
                                        "no route of the gateway matched (deny-all)")
    name = f"egress {transport} {attrs['server.address']}:{port}"
    _emit(spans, logs, namespace, item, start, duration, name, attrs, denied,
          f"{name} {attrs['clrk.decision']} ({attrs['clrk.bytes.sent']} bytes out, "
          f"{attrs['clrk.bytes.received']} in)", "egress.connection")


def _lookup(item: dict[str, Any], namespace: str, spans: list[Any], logs: list[Any]) -> None:
    """A sandbox's DNS question: answered (allow), answered with a route's virtual
    address (route) or refused without asking anyone (deny)."""
    try:
        start = _time(str(item["start_time"]))
    except (KeyError, ValueError):
        return
    denied = item.get("verdict") == "deny"
    attrs = {"dns.question.name": str(item.get("name") or ""),
             "dns.answers": ",".join(item.get("answers") or []),
             "clrk.decision": str(item.get("verdict") or ""),
             "source.address": str(item.get("sandbox") or "")}
    if denied:
        attrs["clrk.deny_reason"] = "no route of the gateway names it (not asked upstream)"
    name = f"dns {attrs['dns.question.name']}"
    _emit(spans, logs, namespace, item, start, 0, name, attrs, denied,
          f"{name} {attrs['clrk.decision']}", "egress.dns")


def _request(item: dict[str, Any], namespace: str, spans: list[Any],
             logs: list[Any], prices: pricing.PriceTable) -> None:
    """An HTTP request the policy service saw (already redacted by the worker), with
    its headers and captured bodies as the span's events."""
    try:
        start = _time(str(item["start_time"]))
        duration = int(float(item.get("duration_ms") or 0) * 1_000_000)
    except (KeyError, ValueError):
        return
    attrs = {str(k): str(v) for k, v in (item.get("attributes") or {}).items()}
    attrs.update(pricing.cost_attributes(attrs, prices))
    events = [(start, str(e.get("name", "")),
               {str(k): str(v) for k, v in (e.get("attributes") or {}).items()})
              for e in item.get("events") or [] if isinstance(e, dict)]
    _emit(spans, logs, namespace, item, start, duration, str(item.get("name") or "http"),
          attrs, bool(item.get("error")), str(item.get("summary") or ""), "egress.http",
          events, str(item.get("span_id") or ""))


def _envoy_request(item: dict[str, Any], namespace: str, gateway: str, spans: list[Any],
                   logs: list[Any], prices: pricing.PriceTable) -> None:
    """An HTTP request Envoy served alone (no policy service on its path), from its
    access log: the record carries no header values but the injected one's name."""
    try:
        start = _time(str(item["start_time"]))
        duration = int(float(item.get("duration_ms") or 0) * 1_000_000)
    except (KeyError, ValueError):
        return
    path = str(item.get("path") or "")
    denied = item.get("decision") == "deny"
    attrs = {"http.request.method": str(item.get("method") or ""),
             "url.scheme": str(item.get("scheme") or "https"),
             "url.path": path.split("?", 1)[0], "server.address": str(item.get("host") or ""),
             "server.port": str(item.get("port") or ""),
             "http.response.status_code": str(item.get("status") or ""),
             "source.address": str(item.get("source") or ""),
             "clrk.gateway": f"{namespace}/{gateway}", "clrk.route":
             f"{namespace}/{str(item.get('route') or '').partition('/')[2]}",
             "clrk.decision": "deny" if denied else "allow",
             "clrk.bytes.sent": str(item.get("bytes_received") or 0),
             "clrk.bytes.received": str(item.get("bytes_sent") or 0)}
    if "?" in path:
        attrs["url.query"] = "[redacted]"  # Envoy logs it as sent; it may carry secrets
    # A provider call Envoy metered: its GenAI attributes, read by the worker.
    attrs.update({str(k): str(v) for k, v in (item.get("attributes") or {}).items()})
    attrs.update(pricing.cost_attributes(attrs, prices))
    if denied:
        attrs["clrk.deny_reason"] = str(item.get("deny_reason") or "")
    headers = {f"http.request.header.{k}": str(item.get(f) or "") for k, f in (
        ("user-agent", "user_agent"), ("content-type", "content_type"),
        ("traceparent", "traceparent")) if item.get(f) not in (None, "", "-")}
    if item.get("injected"):
        headers[f"http.request.header.{item['injected']}"] = "[redacted]"
    name = f"{attrs['http.request.method']} {attrs['server.address']}{attrs['url.path']}"
    _emit(spans, logs, namespace, item, start, duration, name, attrs,
          denied or attrs["http.response.status_code"].startswith("5"),
          call_summary(name, attrs["http.response.status_code"], duration / 1e6,
                       attrs["clrk.bytes.sent"], attrs["clrk.bytes.received"], attrs,
                       attrs.get("clrk.deny_reason")),
          "egress.http", [(start, "http.request", headers)])


def _emit(spans: list[Any], logs: list[Any], namespace: str, item: dict[str, Any],
          start: dt.datetime, duration: int, name: str, attrs: dict[str, str], denied: bool,
          body: str, event: str,
          events: list[tuple[dt.datetime, str, dict[str, str]]] | None = None,
          span_id: str = "") -> None:
    """One span (a child of the invocation's span when attributed) and its summary log."""
    who = item.get("attribution") or {}
    if who:
        attrs.update({"clrk.agent.namespace": who.get("namespace", ""),
                      "clrk.agent.kind": who.get("agentKind", ""),
                      "clrk.agent.name": who.get("agentName", ""),
                      "clrk.invocation": who.get("invocation", "")})
    service = who.get("agentName") or "clrk-egress"
    trace = who.get("traceId") or str(item.get("trace_id") or "") or secrets.token_hex(16)
    span_id = span_id or str(item.get("span_id") or "")
    span_id = span_id if len(span_id) == 16 else secrets.token_hex(8)
    events = events or []
    spans.append([start, trace, span_id, who.get("spanId", ""), "", name, "Client", service,
                  {"service.namespace": namespace}, "clrk.egress", "", attrs, duration,
                  "Error" if denied else "Ok", attrs.get("clrk.deny_reason", ""),
                  [e[0] for e in events], [e[1] for e in events], [e[2] for e in events],
                  [], [], [], []])
    logs.append([start, trace, span_id, 0, "WARN" if denied else "INFO", 13 if denied else 9,
                 service, body, "", {"service.name": service, "k8s.namespace.name": namespace},
                 "", "clrk.egress", "", {}, attrs, event])


def spans_of(store: TelemetryStore, namespace: str, agent_kind: str, agent_name: str,
             invocation: str | None = None, limit: int = 1000) -> list[dict[str, Any]]:
    """The agent's spans (its invocations and their egress calls), oldest first."""
    where = ["ResourceAttributes['service.namespace'] = {ns:String}",
             "SpanAttributes['clrk.agent.kind'] = {kind:String}",
             "SpanAttributes['clrk.agent.name'] = {name:String}"]
    params: dict[str, Any] = {"ns": namespace, "kind": agent_kind, "name": agent_name}
    if invocation:
        where.append("SpanAttributes['clrk.invocation'] = {inv:String}")
        params["inv"] = invocation
    rows = store.query(
        "SELECT Timestamp, TraceId, SpanId, ParentSpanId, SpanName, Duration, StatusCode, "
        "StatusMessage, SpanAttributes, Events.Name, Events.Attributes FROM otel_traces "
        "WHERE " + " AND ".join(where)
        + f" ORDER BY Timestamp LIMIT {int(limit)}", params)
    return [{"startTime": ts.strftime("%Y-%m-%dT%H:%M:%S.%fZ"), "traceId": trace,
             "spanId": span, "parentSpanId": parent, "name": name,
             "durationMs": round(duration / 1e6, 3), "status": status,
             "statusMessage": message, "attributes": dict(attrs),
             "events": [{"name": n, "attributes": dict(a)} for n, a in zip(names, eattrs,
                                                                           strict=False)]}
            for ts, trace, span, parent, name, duration, status, message, attrs, names, eattrs
            in rows]
