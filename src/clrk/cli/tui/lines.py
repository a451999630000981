"""How the TUI writes records: the otel-logs line of the quickstart
(``15:04:05.123 POST api.anthropic.com/v1/messages 200 540ms req=312B resp=1024B
provider=anthropic model=… input_tokens=12 output_tokens=24 route=default/anthropic
trace=a1b2c3d4``), a span's one-line label and its expanded attributes, an agent's
phase in a word or two (``up 4m ↻2``, ``crashloop``, ``idle``, ``active`` and a times
sign and a count)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from clrk.api.agent_state import agent_state
from clrk.cli.dev_components import human_uptime
from clrk.cli.tui.rates import Call, cost

EGRESS_SCOPE = "clrk.egress"


def when(record: dict[str, Any]) -> dt.datetime:
    """The record's time, in this machine's time zone."""
    text = str(record.get("time") or "").removesuffix("Z")
    try:
        return dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC).astimezone()
    except ValueError:
        return dt.datetime.now().astimezone()


def clock(record: dict[str, Any]) -> str:
    t = when(record)
    return t.strftime("%H:%M:%S.") + f"{t.microsecond // 1000:03d}"


def log_line(record: dict[str, Any]) -> str:
    """One captured call (or DNS answer, connection, refusal) as the otel-logs pane shows
    it; the trace is the first 8 hex digits of the record's trace id."""
    line = f"{clock(record)} {record.get('body', '')}"
    trace = str(record.get("traceId") or "")
    return line + (f" trace={trace[:8]}" if trace else "")


def is_call_log(record: dict[str, Any]) -> bool:
    """A record of the otel-logs pane: the gateway's (calls, DNS, L4, refusals)."""
    return record.get("signal") == "log" and record.get("scope") == EGRESS_SCOPE


def agent_of(record: dict[str, Any]) -> tuple[str, str, str] | None:
    """(namespace, kind, name) of the agent a record is attributed to."""
    attrs = record.get("attributes") or {}
    name = attrs.get("clrk.agent.name")
    if not name:
        return None
    return attrs.get("clrk.agent.namespace", ""), attrs.get("clrk.agent.kind", ""), name


def call_of(record: dict[str, Any]) -> Call | None:
    """An HTTP call the gateway made for an agent (a span of the egress scope), with its
    tokens and cost; None for anything else."""
    if record.get("signal") != "span" or record.get("scope") != EGRESS_SCOPE:
        return None
    attrs = record.get("attributes") or {}
    if "http.request.method" not in attrs:
        return None

    def tokens(key: str) -> int:
        try:
            return int(attrs.get(key) or 0)
        except ValueError:
            return 0

    tokens_in = tokens("gen_ai.usage.input_tokens")
    tokens_out = tokens("gen_ai.usage.output_tokens")
    model = attrs.get("gen_ai.response.model") or attrs.get("gen_ai.request.model") or ""
    return Call(when(record).timestamp(), int(record.get("durationNs") or 0) / 1e6,
                tokens_in, tokens_out, cost(model, tokens_in, tokens_out) if model else None)


def span_label(record: dict[str, Any]) -> str:
    """A span's line in the otel-traces pane."""
    attrs = record.get("attributes") or {}
    who = attrs.get("clrk.agent.name") or record.get("service") or ""
    status = attrs.get("http.response.status_code") or record.get("status") or ""
    ms = int(record.get("durationNs") or 0) / 1e6
    return (f"{clock(record)} {record.get('name', '')} {status} {ms:.0f}ms "
            f"[{who}] trace={str(record.get('traceId') or '')[:8]}")


def span_details(record: dict[str, Any]) -> list[str]:
    """What a span expands to: its attributes, then each event with its attributes
    (redacted header values read ``[redacted]``, as stored)."""
    out = [f"{k}: {v}" for k, v in sorted((record.get("attributes") or {}).items())]
    for event in record.get("events") or []:
        out.append(f"event {event.get('name', '')}")
        out += [f"  {k}: {v}" for k, v in sorted((event.get("attributes") or {}).items())]
    return out


def _age(text: str | None) -> float | None:
    if not text:
        return None
    try:
        start = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return max(0.0, (dt.datetime.now(dt.UTC) - start).total_seconds())


def phase(obj: dict[str, Any], in_flight: int = 0) -> str:
    """``up 4m ↻2`` (a running daemon, restarts), ``crashloop``, ``image pull failed``,
    ``idle`` or ``active``, a times sign and N (a TaskAgent, by its executions in
    flight), or what else the agent's state says."""
    state = agent_state(obj)
    status = obj.get("status") or {}
    if state.reason in ("ImagePullFailed", "ImagePullBackOff", "ErrImagePull"):
        return "image pull failed"
    if obj.get("kind") == "DaemonAgent":
        if status.get("phase") == "CrashLoopBackOff":
            return "crashloop"
        if status.get("phase") == "Running":
            restarts = int(status.get("restartCount") or 0)
            return f"up {human_uptime(_age(status.get('upSince')))}" + (
                f" ↻{restarts}" if restarts else "")
        return str(status.get("phase") or state.phase).lower()
    if state.phase != "Ready":
        return state.summary().lower()
    running = max(in_flight, int(status.get("inFlight") or 0))
    return f"active \u00d7{running}" if running else "idle"
