"""Agent stdout/stderr as OpenTelemetry log records in ``otel_logs``, and reading them
back for ``/logs`` (since, until, limit, tail, continue, follow).

Each record carries the agent's identity as resource attributes and the invocation and
stream (``log.iostream``) as log attributes. Timestamps are made strictly increasing, so
a timestamp is both the order and the ``continue`` position (microseconds: what
clickhouse-connect carries in a datetime).
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from clrk.telemetry.client import TelemetryStore

MAX_LINE = 16 * 1024  # a longer line becomes several records
MAX_PER_STREAM = 4 * 1024 * 1024  # per invocation and stream; the rest is counted, not kept
SEVERITY = {"stdout": (9, "INFO"), "stderr": (13, "WARN")}


@dataclass(frozen=True)
class Source:
    """Who wrote a line: the agent, its revision, the invocation and the worker."""

    namespace: str
    agent_kind: str
    agent_name: str
    invocation: str
    trace_id: str = ""
    span_id: str = ""
    revision: str | None = None
    worker: str | None = None

    def resource(self) -> dict[str, str]:
        out = {"service.name": self.agent_name, "k8s.namespace.name": self.namespace,
               "clrk.agent.kind": self.agent_kind, "clrk.agent.name": self.agent_name}
        if self.revision:
            out["clrk.revision"] = self.revision
        if self.worker:
            out["clrk.worker"] = self.worker
        return out


@dataclass(frozen=True)
class LogLine:
    timestamp_ns: int
    namespace: str
    agent_kind: str
    agent_name: str
    invocation: str
    stream: str
    message: str

    def to_json(self) -> dict[str, Any]:
        return {"timestamp": ns_to_rfc3339(self.timestamp_ns), "invocation": self.invocation,
                "stream": self.stream, "message": self.message}


def ns_to_rfc3339(ns: int) -> str:
    t = dt.datetime.fromtimestamp(ns // 1_000_000_000, dt.UTC)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ns % 1_000_000_000:09d}Z"


def parse_time(text: str, now_ns: int | None = None) -> int:
    """RFC 3339 or a duration back from now (``10s``, ``5m``, ``2h``) -> epoch ns."""
    now_ns = time.time_ns() if now_ns is None else now_ns
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    if text and text[-1] in units and text[:-1].replace(".", "", 1).isdigit():
        return now_ns - int(float(text[:-1]) * units[text[-1]] * 1e9)
    try:
        t = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{text!r} is neither an RFC 3339 time nor a duration like 5m") \
            from None
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.UTC)
    frac = text.split(".", 1)[1].rstrip("Z").split("+")[0].split("-")[0] if "." in text else ""
    whole = int(t.replace(microsecond=0).timestamp()) * 1_000_000_000
    return whole + int((frac + "000000000")[:9]) if frac.isdigit() else \
        whole + t.microsecond * 1000


@dataclass
class _Stream:
    partial: bytearray = field(default_factory=bytearray)
    kept: int = 0
    dropped: int = 0


@dataclass
class Query:
    namespace: str
    agent_kind: str
    agent_name: str
    invocation: str | None = None
    stream: str | None = None
    since_ns: int | None = None
    until_ns: int | None = None
    after_ns: int | None = None  # the continue position
    limit: int = 0
    tail: int = 0

    def matches(self, line: LogLine) -> bool:
        return (line.namespace == self.namespace and line.agent_kind == self.agent_kind
                and line.agent_name == self.agent_name
                and (self.invocation is None or line.invocation == self.invocation)
                and (self.stream is None or line.stream == self.stream)
                and (self.since_ns is None or line.timestamp_ns >= self.since_ns)
                and (self.until_ns is None or line.timestamp_ns < self.until_ns)
                and (self.after_ns is None or line.timestamp_ns > self.after_ns))


def encode_continue(ns: int) -> str:
    return base64.urlsafe_b64encode(str(ns).encode()).decode().rstrip("=")


def decode_continue(token: str) -> int:
    try:
        return int(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode())
    except ValueError:
        raise ValueError(f"invalid continue token {token!r}") from None


class AgentLogs:
    """Writes agent output to the store and serves it back, live lines included."""

    def __init__(self, store: TelemetryStore) -> None:
        self.store = store
        self._last_ns = 0
        self._streams: dict[tuple[str, str, str], _Stream] = {}
        self._followers: dict[int, tuple[Query, asyncio.Queue[LogLine | None]]] = {}

    # ---- writing -----------------------------------------------------------------------

    def write(self, source: Source, stream: str, data: bytes) -> None:
        """Split output into lines; a partial line waits for its end (or ``close``)."""
        st = self._streams.setdefault((source.namespace, source.invocation, stream), _Stream())
        st.partial.extend(data)
        *lines, rest = bytes(st.partial).split(b"\n")
        st.partial = bytearray(rest)
        while len(st.partial) > MAX_LINE:
            lines.append(bytes(st.partial[:MAX_LINE]))
            del st.partial[:MAX_LINE]
        self._emit(source, stream, st, lines)

    def close(self, source: Source) -> None:
        """The invocation ended: write what is left, and note what was not kept."""
        for stream in ("stdout", "stderr"):
            st = self._streams.pop((source.namespace, source.invocation, stream), None)
            if st is None:
                continue
            if st.partial:
                self._emit(source, stream, st, [bytes(st.partial)])
            if st.dropped:
                st.kept = 0
                self._emit(source, stream, st, [
                    f"[clrk: {st.dropped} more bytes of {stream} were not kept; the limit "
                    f"is {MAX_PER_STREAM} bytes per invocation]".encode()])

    def _emit(self, source: Source, stream: str, st: _Stream, lines: list[bytes]) -> None:
        rows = []
        severity, severity_text = SEVERITY.get(stream, (9, "INFO"))
        resource = source.resource()
        for raw in lines:
            if st.kept + len(raw) > MAX_PER_STREAM:
                st.dropped += len(raw) + 1
                continue
            st.kept += len(raw) + 1
            ns = max(time.time_ns() // 1000 * 1000, self._last_ns + 1000)
            self._last_ns = ns
            text = raw.decode("utf-8", "replace").rstrip("\r")
            rows.append([ns_to_datetime(ns), source.trace_id, source.span_id, 0, severity_text,
                         severity, source.agent_name, text, "", resource, "", "clrk.agent",
                         "", {}, {"log.iostream": stream, "clrk.invocation": source.invocation},
                         ""])
            line = LogLine(ns, source.namespace, source.agent_kind, source.agent_name,
                           source.invocation, stream, text)
            for query, queue in self._followers.values():
                if query.matches(line):
                    queue.put_nowait(line)
        if rows:
            self.store.insert("otel_logs", rows)

    # ---- reading -----------------------------------------------------------------------

    def read(self, q: Query) -> list[LogLine]:
        where = ["ResourceAttributes['k8s.namespace.name'] = {ns:String}",
                 "ResourceAttributes['clrk.agent.kind'] = {kind:String}",
                 "ServiceName = {name:String}"]
        params: dict[str, Any] = {"ns": q.namespace, "kind": q.agent_kind,
                                  "name": q.agent_name}
        if q.invocation:
            where.append("LogAttributes['clrk.invocation'] = {inv:String}")
            params["inv"] = q.invocation
        if q.stream:
            where.append("LogAttributes['log.iostream'] = {stream:String}")
            params["stream"] = q.stream
        for column, op, value in (("since", ">=", q.since_ns), ("until", "<", q.until_ns),
                                  ("after", ">", q.after_ns)):
            if value is not None:
                where.append(f"toUnixTimestamp64Nano(Timestamp) {op} {{{column}:Int64}}")
                params[column] = value
        order = "DESC" if q.tail else "ASC"
        limit = q.tail or q.limit
        sql = ("SELECT toUnixTimestamp64Nano(Timestamp), LogAttributes['clrk.invocation'], "
               "LogAttributes['log.iostream'], Body FROM otel_logs WHERE "
               + " AND ".join(where) + f" ORDER BY Timestamp {order}"
               + (f" LIMIT {int(limit)}" if limit else ""))
        rows = self.store.query(sql, params)
        if q.tail:
            rows.reverse()
        return [LogLine(int(ts), q.namespace, q.agent_kind, q.agent_name, inv, stream, body)
                for ts, inv, stream, body in rows]

    def follow(self, q: Query) -> tuple[asyncio.Queue[LogLine | None], Callable[[], None]]:
        """Live lines matching ``q`` from now on, and the function that stops them."""
        queue: asyncio.Queue[LogLine | None] = asyncio.Queue()
        self._followers[id(queue)] = (q, queue)
        return queue, lambda: self._followers.pop(id(queue), None) and None

    def end_followers(self) -> None:
        for _, queue in self._followers.values():
            queue.put_nowait(None)


EPOCH = dt.datetime(1970, 1, 1)


def ns_to_datetime(ns: int) -> dt.datetime:
    """A naive UTC datetime, exact to the microsecond (no float on the way)."""
    return EPOCH + dt.timedelta(microseconds=ns // 1000)
