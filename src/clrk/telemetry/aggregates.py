"""Reads of the telemetry store's aggregates, as the JSON records the web console's API
and the agents' ``usage`` subresource answer.

Every aggregate reads ``clrk_calls`` (one typed row per span, written by a materialized
view as spans are inserted; see :mod:`clrk.telemetry.schema`), never the Map columns of
``otel_traces``: over a million spans that is the difference between a few and a few
hundred milliseconds. ``otel_traces`` is read for one span's attributes and events only,
by trace id (a bloom-filter index). Times are UTC; amounts of money are decimal strings
(exact sums of the per-call costs recorded with each span), and calls of a model without
a price are counted apart as unpriced, never summed as zero.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Protocol

EGRESS_KINDS = ("llm", "mcp", "http", "tcp", "udp", "dns")


class Store(Protocol):
    def query(self, sql: str, parameters: dict[str, Any] | None = None
              ) -> list[tuple[Any, ...]]: ...


@dataclass(frozen=True)
class Window:
    """A period back from now and the width of its chart's buckets."""

    name: str
    seconds: int
    bucket: int

    def since(self) -> dt.datetime:
        return _utcnow() - dt.timedelta(seconds=self.seconds)


WINDOWS = {w.name: w for w in (Window("1h", 3600, 60), Window("24h", 86_400, 1800),
                               Window("7d", 7 * 86_400, 4 * 3600))}


def window(name: str | None) -> Window:
    """The named window (1h, 24h or 7d; 24h when unnamed), or ValueError naming them."""
    found = WINDOWS.get(name or "24h")
    if found is None:
        raise ValueError(f"window {name!r} is not one of {', '.join(WINDOWS)}")
    return found


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def iso(t: dt.datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def money(value: Decimal | int | None) -> str:
    """A cost as a decimal string without trailing zeros ("0.0042", "0")."""
    amount = Decimal(value or 0)
    return f"{amount.normalize():f}" if amount else "0"


def _ms(ns: float | None) -> float | None:
    return None if ns is None or ns != ns else round(float(ns) / 1e6, 1)  # NaN: no rows


def _records(names: Sequence[str], rows: list[tuple[Any, ...]]) -> list[dict[str, Any]]:
    out = []
    for row in rows:
        rec: dict[str, Any] = {}
        for name, value in zip(names, row, strict=True):
            if isinstance(value, Decimal):
                value = money(value)
            elif isinstance(value, dt.datetime):
                value = iso(value)
            elif isinstance(value, dt.date):
                value = value.isoformat()
            rec[name] = value
        out.append(rec)
    return out


# Sums every view shows for a set of calls; llm-only where they are about models.
_TOTALS = """
    countIf(Kind = 'invocation') AS invocations,
    countIf(Kind = 'invocation' AND Status = 'Succeeded') AS succeeded,
    countIf(Kind = 'invocation' AND Status != 'Succeeded') AS failed,
    quantileIf(0.5)(Duration, Kind = 'invocation') AS p50,
    quantileIf(0.95)(Duration, Kind = 'invocation') AS p95,
    countIf(Kind = 'llm') AS llmCalls,
    sumIf(InputTokens, Kind = 'llm') AS inputTokens,
    sumIf(OutputTokens, Kind = 'llm') AS outputTokens,
    sumIf(CacheReadTokens, Kind = 'llm') AS cacheReadTokens,
    sumIf(CacheWriteTokens, Kind = 'llm') AS cacheWriteTokens,
    sumIf(ReasoningTokens, Kind = 'llm') AS reasoningTokens,
    sumIf(CostUSD, Kind = 'llm') AS costUSD,
    countIf(Kind = 'llm' AND Unpriced) AS unpricedCalls,
    countIf(Decision = 'deny') AS denied"""
_TOTAL_NAMES = ("invocations", "succeeded", "failed", "p50", "p95", "llmCalls", "inputTokens",
                "outputTokens", "cacheReadTokens", "cacheWriteTokens", "reasoningTokens",
                "costUSD", "unpricedCalls", "denied")


def _totals(rec: dict[str, Any]) -> dict[str, Any]:
    rec["p50Ms"], rec["p95Ms"] = _ms(rec.pop("p50")), _ms(rec.pop("p95"))
    runs = rec["invocations"]
    rec["errorRate"] = round(rec["failed"] / runs, 4) if runs else None
    return rec


def _grouping_sets(store: Store, columns: dict[str, str], sets: dict[str, tuple[str, ...]],
                   sums: str, sum_names: Sequence[str], where: str,
                   params: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """One scan aggregated several ways (GROUP BY GROUPING SETS): per named set, the rows
    keyed by the set's columns (named as in ``columns``, SQL expression -> name). A
    million rows read once instead of once per grouping is what keeps a 7-day page fast."""
    exprs = list(columns)
    masks = {}
    for name, cols in sets.items():  # standard GROUPING(): a bit set = not grouped by
        masks[sum(1 << (len(exprs) - 1 - i) for i, e in enumerate(exprs) if e not in cols)] \
            = name
    rows = store.query(
        f"SELECT grouping({', '.join(exprs)}), {', '.join(exprs)}, {sums} FROM clrk_calls "
        f"WHERE {where} GROUP BY GROUPING SETS ("
        + ", ".join(f"({', '.join(cols)})" for cols in sets.values())
        + ") SETTINGS force_grouping_standard_compatibility = 1", params)
    out: dict[str, list[dict[str, Any]]] = {name: [] for name in sets}
    names = [columns[e] for e in exprs]
    for row in rows:
        name = masks[row[0]]
        rec = _records((*names, *sum_names), [row[1:]])[0]
        for e in exprs:
            if e not in sets[name]:
                del rec[columns[e]]
        out[name].append(rec)
    return out


def overview(store: Store, w: Window) -> dict[str, Any]:
    """The window's totals, its chart (per ``bucket`` seconds) and its ten top agents."""
    since = w.since()
    bucket = f"toStartOfInterval(Timestamp, toIntervalSecond({int(w.bucket)}))"
    agent = ("Namespace", "AgentKind", "AgentName")
    got = _grouping_sets(
        store, {bucket: "time", "Namespace": "namespace", "AgentKind": "kind",
                "AgentName": "name"},
        {"totals": (), "chart": (bucket,), "agents": agent}, _TOTALS, _TOTAL_NAMES,
        "Timestamp >= {since:DateTime64(6)}", {"since": since})
    totals = got["totals"][0] if got["totals"] else dict.fromkeys(_TOTAL_NAMES, 0)
    chart = sorted(({"time": r["time"], "invocations": r["invocations"], "failed": r["failed"],
                     "tokens": r["inputTokens"] + r["outputTokens"], "costUSD": r["costUSD"],
                     "denied": r["denied"]} for r in got["chart"]), key=lambda r: r["time"])
    agents = sorted((_totals(r) for r in got["agents"] if r["name"]),
                    key=lambda r: (-r["invocations"], r["name"]))
    return {"window": w.name, "bucketSeconds": w.bucket, "since": iso(since),
            "until": iso(_utcnow()), "totals": _totals(totals), "chart": chart,
            "topAgents": agents[:10]}


def agent_stats(store: Store, w: Window, limit: int = 10_000) -> list[dict[str, Any]]:
    """Each agent's invocations, latencies, tokens, cost and denials in the window."""
    rows = store.query(
        f"SELECT Namespace, AgentKind, AgentName, {_TOTALS} FROM clrk_calls "
        "WHERE Timestamp >= {since:DateTime64(6)} AND AgentName != '' "
        "GROUP BY Namespace, AgentKind, AgentName ORDER BY invocations DESC, AgentName "
        "LIMIT {limit:UInt32}", {"since": w.since(), "limit": limit})
    return [_totals(r) for r in _records(("namespace", "kind", "name", *_TOTAL_NAMES), rows)]


_INVOCATION = ("name", "namespace", "agentKind", "agentName", "traceId", "phase", "startTime",
               "durationMs", "reason")


def invocations(store: Store, *, namespace: str | None = None, agent_kind: str | None = None,
                agent_name: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
    """Finished invocations, newest first, with their tokens and cost."""
    where = ["Kind = 'invocation'"]
    params: dict[str, Any] = {"limit": limit}
    for column, value in (("Namespace", namespace), ("AgentKind", agent_kind),
                          ("AgentName", agent_name)):
        if value:
            where.append(f"{column} = {{{column}:String}}")
            params[column] = value
    found = _records(_INVOCATION, store.query(
        "SELECT Invocation, Namespace, AgentKind, AgentName, TraceId, Status, Timestamp, "
        "round(Duration / 1e6, 1), Reason FROM clrk_calls WHERE " + " AND ".join(where)
        + " ORDER BY Timestamp DESC LIMIT {limit:UInt32}", params))
    if found:
        usage = {r[0]: r[1:] for r in store.query(
            "SELECT Invocation, sum(InputTokens), sum(OutputTokens), sum(CostUSD), "
            "countIf(Unpriced), countIf(Decision = 'deny') FROM clrk_calls WHERE Kind IN "
            "{kinds:Array(String)} AND Invocation IN {names:Array(String)} AND Timestamp >= "
            "{since:DateTime64(6)} GROUP BY Invocation",
            {"kinds": list(EGRESS_KINDS), "names": [f["name"] for f in found],
             "since": dt.datetime.fromisoformat(found[-1]["startTime"].rstrip("Z"))
             - dt.timedelta(minutes=5)})}
        for f in found:
            inp, out, cost, unpriced, denied = usage.get(f["name"], (0, 0, 0, 0, 0))
            f.update(inputTokens=inp, outputTokens=out, costUSD=money(cost),
                     unpricedCalls=unpriced, denied=denied)
    return found


_SPAN = ("spanId", "parentSpanId", "kind", "name", "startTime", "durationMs", "status",
         "decision", "reason", "provider", "model", "tool", "host", "gateway", "route",
         "streamed", "inputTokens", "outputTokens", "cacheReadTokens", "cacheWriteTokens",
         "reasoningTokens", "costUSD", "unpriced")


def trace(store: Store, trace_id: str, since: dt.datetime) -> list[dict[str, Any]]:
    """The spans of one trace (the execution and every call under it), oldest first."""
    rows = store.query(
        "SELECT SpanId, ParentSpanId, Kind, Name, Timestamp, round(Duration / 1e6, 3), "
        "Status, Decision, Reason, Provider, Model, Tool, Host, Gateway, Route, Streamed, "
        "InputTokens, OutputTokens, CacheReadTokens, CacheWriteTokens, ReasoningTokens, "
        "CostUSD, Unpriced FROM clrk_calls WHERE TraceId = {trace:String} AND Timestamp >= "
        "{since:DateTime64(6)} ORDER BY Timestamp, SpanId LIMIT 5000",
        {"trace": trace_id, "since": since})
    spans = _records(_SPAN, rows)
    for s in spans:
        s["streamed"], s["unpriced"] = bool(s["streamed"]), bool(s["unpriced"])
    return spans


def span(store: Store, trace_id: str, span_id: str) -> dict[str, Any] | None:
    """One span whole: its attributes and events (headers, already redacted when recorded,
    and any captured bodies)."""
    rows = store.query(
        "SELECT SpanName, Timestamp, Duration, StatusCode, StatusMessage, SpanAttributes, "
        "Events.Name, Events.Attributes FROM otel_traces WHERE TraceId = {trace:String} AND "
        "SpanId = {span:String} LIMIT 1", {"trace": trace_id, "span": span_id})
    if not rows:
        return None
    name, ts, duration, status, message, attrs, names, eattrs = rows[0]
    return {"traceId": trace_id, "spanId": span_id, "name": name, "startTime": iso(ts),
            "durationMs": round(duration / 1e6, 3), "status": status,
            "statusMessage": message, "attributes": dict(attrs),
            "events": [{"name": n, "attributes": dict(a)}
                       for n, a in zip(names, eattrs, strict=False)]}


_SPEND = ("inputTokens", "outputTokens", "cacheReadTokens", "cacheWriteTokens",
          "reasoningTokens", "costUSD", "calls", "unpricedCalls")
_SPEND_SUMS = ("sum(InputTokens), sum(OutputTokens), sum(CacheReadTokens), "
               "sum(CacheWriteTokens), sum(ReasoningTokens), sum(CostUSD), count(), "
               "countIf(Unpriced)")
_SPEND_BY = {"model": ("Provider", "Model"),
             "agent": ("Namespace", "AgentKind", "AgentName"),
             "provider": ("Provider",), "gateway": ("Gateway",), "route": ("Route",)}


def spend(store: Store, w: Window) -> dict[str, Any]:
    """Tokens and cost of the window's LLM calls, per day and model and grouped by agent,
    model, provider, gateway and route (cache-read and reasoning tokens apart)."""
    got = _grouping_sets(
        store, {"toDate(Timestamp)": "day", "Provider": "provider", "Model": "model",
                "Namespace": "namespace", "AgentKind": "agentKind", "AgentName": "agentName",
                "Gateway": "gateway", "Route": "route"},
        {"totals": (), "perDay": ("toDate(Timestamp)", "Provider", "Model"),
         **{f"by{key.capitalize()}": columns for key, columns in _SPEND_BY.items()}},
        _SPEND_SUMS, _SPEND, "Kind = 'llm' AND Timestamp >= {since:DateTime64(6)}",
        {"since": w.since()})
    out: dict[str, Any] = {"window": w.name}
    out["totals"] = got.pop("totals")[0] if got["totals"] else dict.fromkeys(_SPEND, 0)
    out["perDay"] = sorted(got.pop("perDay"), key=lambda r: (r["day"], r["provider"],
                                                             r["model"]))
    for key, rows in got.items():
        out[key] = sorted(rows, key=lambda r: (-Decimal(r["costUSD"]), -r["calls"]))[:500]
    return out


def hosts(store: Store, w: Window, limit: int = 500) -> list[dict[str, Any]]:
    """The hosts each agent reached or was refused, with counts, from the recorded spans."""
    return _records(("namespace", "agentName", "host", "kind", "decision", "calls",
                     "lastSeen", "reason"), store.query(
        "SELECT Namespace, AgentName, Host, Kind, Decision, count() AS calls, "
        "max(Timestamp), anyIf(Reason, Decision = 'deny') FROM clrk_calls WHERE Kind IN "
        "{kinds:Array(String)} AND Timestamp >= {since:DateTime64(6)} GROUP BY Namespace, "
        "AgentName, Host, Kind, Decision ORDER BY calls DESC, Host LIMIT {limit:UInt32}",
        {"kinds": list(EGRESS_KINDS), "since": w.since(), "limit": limit}))


_LIVE = ("recorded", "kind", "namespace", "agentKind", "agentName", "invocation", "traceId",
         "spanId", "name", "startTime", "durationMs", "status", "decision", "reason", "model",
         "inputTokens", "outputTokens", "costUSD", "unpriced")


def recorded_since(store: Store, after: dt.datetime, limit: int = 200
                   ) -> list[dict[str, Any]]:
    """Spans recorded after ``after`` (the live view's cursor), newest first. An egress
    span is recorded once its call ended, so this follows what was just written."""
    rows = store.query(
        "SELECT Recorded, Kind, Namespace, AgentKind, AgentName, Invocation, TraceId, SpanId, "
        "Name, Timestamp, round(Duration / 1e6, 1), Status, Decision, Reason, Model, "
        "InputTokens, OutputTokens, CostUSD, Unpriced FROM clrk_calls WHERE Recorded > "
        "{after:DateTime64(6)} AND Timestamp >= {since:DateTime64(6)} AND Kind != 'agent' "
        "ORDER BY Recorded DESC, SpanId LIMIT {limit:UInt32}",
        {"after": after, "since": after - dt.timedelta(days=1), "limit": limit})
    found = _records(_LIVE, rows)
    for f in found:
        f["unpriced"] = bool(f["unpriced"])
    return found


def agent_usage(store: Store, namespace: str, kind: str, name: str, w: Window
                ) -> dict[str, Any]:
    """One agent's totals in the window (the ``usage`` subresource)."""
    rows = store.query(
        f"SELECT {_TOTALS} FROM clrk_calls WHERE Timestamp >= {{since:DateTime64(6)}} AND "
        "Namespace = {ns:String} AND AgentKind = {kind:String} AND AgentName = {name:String}",
        {"since": w.since(), "ns": namespace, "kind": kind, "name": name})
    return _totals(_records(_TOTAL_NAMES, rows)[0])
