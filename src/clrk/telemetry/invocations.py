"""The Invocation ledger: every execution's record, from admission to its end.

The latest state of each Invocation is a row in ``clrk_invocations``; the ledger numbers
changes with its own resourceVersions and keeps the recent ones in memory so list+watch
works exactly as for stored kinds (the watch stream reads it through the same protocol
as the SQLite store). Invocations are written only by the system: the scheduler for
TaskAgent executions, workers (through the API server) for DaemonAgent runs.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import logging
import secrets
import threading
import uuid
from collections import deque
from dataclasses import dataclass
from typing import Any

from clrk.api.invocation import Invocation
from clrk.apiserver.storage import Event, Obj
from clrk.apiserver.watch import WatchHub
from clrk.telemetry.client import TelemetryStore

log = logging.getLogger("clrk.telemetry")
GROUP = Invocation.kind_info.group
PLURAL = Invocation.kind_info.plural
TERMINAL = frozenset({"Succeeded", "Failed", "Timeout", "Rejected"})


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def rfc3339(t: dt.datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse(ts: str) -> dt.datetime:
    return dt.datetime.fromisoformat(ts.replace("Z", "+00:00"))


def _trace_id(text: str, digits: int) -> bool:
    """Lower-case hex of the given length, not all zeros (W3C trace-context)."""
    return len(text) == digits and text.strip("0123456789abcdef") == "" \
        and text.strip("0") != ""


@dataclass(frozen=True)
class Started:
    """What the invoker needs to keep writing one Invocation."""

    namespace: str
    name: str
    trace_id: str
    span_id: str
    agent_kind: str
    agent_name: str
    revision: str | None
    execution_id: str


class InvocationLedger:
    group = GROUP
    plural = PLURAL

    def __init__(self, store: TelemetryStore, hub: WatchHub, history: int = 10_000) -> None:
        self.store = store
        self.hub = hub
        self._rv = 0
        self._oldest = 0
        self._events: deque[Event] = deque(maxlen=history)
        self._live: dict[tuple[str, str], Obj] = {}  # not yet terminal
        self._lock = threading.RLock()

    # ---- startup -----------------------------------------------------------------------

    def open(self) -> None:
        """Continue numbering after the stored rows; executions that were running when
        the previous server stopped can no longer report, so they end as Failed."""
        rows = self.store.query("SELECT max(ResourceVersion) FROM clrk_invocations")
        self._rv = int(rows[0][0] or 0) if rows else 0
        self._oldest = self._rv
        stale = self.store.query(
            "SELECT Object FROM clrk_invocations FINAL WHERE Phase NOT IN "
            "('Succeeded', 'Failed', 'Timeout', 'Rejected')")
        for (text,) in stale:
            obj = json.loads(text)
            md = obj["metadata"]
            self._live[(md["namespace"], md["name"])] = obj
            self.finish(md["namespace"], md["name"], "Failed",
                        reason="Interrupted: the API server restarted while this execution "
                        "ran, so its outcome is unknown")
        self._oldest = self._rv

    # ---- the read protocol shared with the SQLite store ---------------------------------

    @property
    def resource_version(self) -> int:
        return self._rv

    def oldest_retained(self) -> int:
        return self._events[0].rv - 1 if self._events else self._oldest

    def events_since(self, rv: int, group: str, plural: str) -> list[Event]:
        return [e for e in self._events if e.rv > rv]

    def list_objects(self, group: str = GROUP, plural: str = PLURAL,
                     namespace: str | None = None) -> list[Obj]:
        if namespace is None:
            rows = self.store.query("SELECT Object FROM clrk_invocations FINAL "
                                    "ORDER BY Namespace, Name")
        else:
            rows = self.store.query("SELECT Object FROM clrk_invocations FINAL WHERE "
                                    "Namespace = {ns:String} ORDER BY Name", {"ns": namespace})
        return [json.loads(text) for (text,) in rows]

    def running(self) -> list[Obj]:
        """The Invocations not finished yet (pending or running), oldest first."""
        with self._lock:
            live = list(self._live.values())
        return sorted(live, key=lambda o: o["metadata"]["creationTimestamp"])

    def get(self, namespace: str, name: str) -> Obj | None:
        live = self._live.get((namespace, name))
        if live is not None:
            return live
        rows = self.store.query(
            "SELECT Object FROM clrk_invocations FINAL WHERE Namespace = {ns:String} "
            "AND Name = {name:String}", {"ns": namespace, "name": name})
        found: Obj | None = json.loads(rows[0][0]) if rows else None
        return found

    # ---- writes ------------------------------------------------------------------------

    def begin(self, namespace: str, agent_kind: str, agent_name: str, *,
              revision: str | None, trigger: str | None, execution_id: str,
              labels: dict[str, str] | None = None) -> Started:
        name = f"{agent_name[:52]}-{secrets.token_hex(5)}"
        trace_id, span_id = secrets.token_hex(16), secrets.token_hex(8)
        spec = {"agentKind": agent_kind, "agentName": agent_name, "revision": revision,
                "trigger": trigger, "executionId": execution_id, "traceId": trace_id,
                "spanId": span_id}
        obj: Obj = {
            "apiVersion": Invocation.kind_info.api_version, "kind": "Invocation",
            "metadata": {"name": name, "namespace": namespace, "uid": str(uuid.uuid4()),
                         "creationTimestamp": _now().strftime("%Y-%m-%dT%H:%M:%SZ"),
                         "labels": {"clrk.apoxy.dev/agent": agent_name,
                                    "clrk.apoxy.dev/agent-kind": agent_kind,
                                    **(labels or {})}},
            "spec": {k: v for k, v in spec.items() if v is not None},
            "status": {"phase": "Pending"},
        }
        with self._lock:
            self._write(obj, None)
        return Started(namespace, name, trace_id, span_id, agent_kind, agent_name, revision,
                       execution_id)

    def transition(self, namespace: str, name: str, phase: str, **status: Any) -> Obj | None:
        """Move a live Invocation on; a finished one never changes again."""
        with self._lock:
            previous = self._live.get((namespace, name))
            if previous is None:
                return None
            obj: Obj = copy.deepcopy(previous)
            st = obj.setdefault("status", {})
            st["phase"] = phase
            if phase == "Running" and "startTime" not in st:
                st["startTime"] = rfc3339(_now())
            for key, value in status.items():
                if value is not None:
                    st[key] = value
            if phase in TERMINAL:
                st["completionTime"] = rfc3339(_now())
            self._write(obj, previous)
            return obj

    def adopt(self, namespace: str, name: str, trace_id: str, span_id: str) -> Obj | None:
        """The execution runs in a sandbox started ahead (the warm pool), whose
        TRACEPARENT was fixed then: the Invocation takes that sandbox's trace and span
        ids, before the agent runs, so its span, the egress spans and the agent's own
        spans agree. ValueError for ids that are not W3C trace-context ids."""
        if not (_trace_id(trace_id, 32) and _trace_id(span_id, 16)):
            raise ValueError(f"invalid trace/span id {trace_id[:40]!r}/{span_id[:20]!r}")
        with self._lock:
            previous = self._live.get((namespace, name))
            if previous is None:
                return None
            spec = previous["spec"]
            if (spec.get("traceId"), spec.get("spanId")) == (trace_id, span_id):
                return previous
            obj: Obj = copy.deepcopy(previous)
            obj["spec"].update(traceId=trace_id, spanId=span_id)
            self._write(obj, previous)
            return obj

    def finish(self, namespace: str, name: str, phase: str, **status: Any) -> Obj | None:
        obj = self.transition(namespace, name, phase, **status)
        if obj is not None:
            self._span(obj)
        return obj

    def _write(self, obj: Obj, previous: Obj | None) -> None:
        self._rv += 1
        md = obj["metadata"]
        md["resourceVersion"] = str(self._rv)
        key = (md["namespace"], md["name"])
        phase = obj["status"]["phase"]
        if phase in TERMINAL:
            self._live.pop(key, None)
        else:
            self._live[key] = obj
        created = _parse(md["creationTimestamp"])
        self.store.insert("clrk_invocations", [[
            md["namespace"], md["name"], self._rv, created, obj["spec"]["agentKind"],
            obj["spec"]["agentName"], phase, json.dumps(obj, separators=(",", ":"))]])
        event = Event(self._rv, "ADDED" if previous is None else "MODIFIED", GROUP, PLURAL,
                      md["namespace"], md["name"], obj, previous)
        self._events.append(event)
        self.hub.publish(event)

    def _span(self, obj: Obj) -> None:
        """The execution as one span in otel_traces, so egress spans have a parent."""
        md, spec, st = obj["metadata"], obj["spec"], obj["status"]
        start = _parse(st.get("startTime") or md["creationTimestamp"])
        end = _parse(st["completionTime"])
        attrs = {"clrk.agent.kind": spec["agentKind"], "clrk.agent.name": spec["agentName"],
                 "clrk.agent.namespace": md["namespace"], "clrk.invocation": md["name"],
                 "clrk.invocation.phase": st["phase"],
                 "clrk.execution.id": spec.get("executionId", ""),
                 "clrk.revision": spec.get("revision") or "",
                 "clrk.trigger": spec.get("trigger") or "",
                 "clrk.worker": st.get("worker") or ""}
        if st.get("exitCode") is not None:
            attrs["process.exit.code"] = str(st["exitCode"])
        ok = st["phase"] == "Succeeded"
        self.store.insert("otel_traces", [[
            start, spec.get("traceId", ""), spec.get("spanId", ""), "", "",
            f"invoke {spec['agentName']}", "Server", "clrk",
            {"service.namespace": md["namespace"]}, "clrk", "", attrs,
            max(0, int((end - start).total_seconds() * 1e9)),
            "Ok" if ok else "Error", "" if ok else (st.get("reason") or ""),
            [], [], [], [], [], [], []]])
