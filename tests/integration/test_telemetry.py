"""The telemetry store on real chDB: invocations across restarts, logs, spans."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from clrk.apiserver.watch import WatchHub
from clrk.telemetry.client import TelemetryStore, dsn_for
from clrk.telemetry.invocations import InvocationLedger
from clrk.telemetry.logs import MAX_LINE, AgentLogs, Query, Source, parse_time


@pytest.fixture
def store(tmp_path: Path) -> Iterator[TelemetryStore]:
    s = TelemetryStore(dsn_for(tmp_path / "db"))
    s.open()
    yield s
    s.close()


def test_an_interrupted_invocation_fails_on_restart(tmp_path: Path) -> None:
    store = TelemetryStore(dsn_for(tmp_path / "db"))
    store.open()
    ledger = InvocationLedger(store, WatchHub())
    ledger.open()
    done = ledger.begin("default", "TaskAgent", "a", revision="a-00001", trigger="http",
                        execution_id="e1")
    ledger.finish("default", done.name, "Succeeded", exitCode=0)
    running = ledger.begin("default", "TaskAgent", "a", revision="a-00001", trigger="cron",
                           execution_id="e2")
    ledger.transition("default", running.name, "Running")
    rv = ledger.resource_version
    store.close()

    store = TelemetryStore(dsn_for(tmp_path / "db"))
    store.open()
    try:
        ledger = InvocationLedger(store, WatchHub())
        ledger.open()
        assert ledger.resource_version > rv  # numbering continues
        again = ledger.get("default", running.name)
        assert again is not None and again["status"]["phase"] == "Failed"
        assert again["status"]["reason"].startswith("Interrupted")
        assert ledger.get("default", done.name)["status"]["phase"] == "Succeeded"  # type: ignore[index]
        names = {o["metadata"]["name"] for o in ledger.list_objects(namespace="default")}
        assert names == {done.name, running.name}
        assert ledger.list_objects(namespace="other") == []
        # A finished invocation never changes again.
        assert ledger.transition("default", done.name, "Running") is None
        spans = store.query("SELECT SpanName, StatusCode, SpanAttributes['clrk.invocation'] "
                            "FROM otel_traces ORDER BY Timestamp")
        assert [(s[0], s[1]) for s in spans] == [("invoke a", "Ok"), ("invoke a", "Error")]
    finally:
        store.close()


def test_watch_events_follow_the_phases(store: TelemetryStore) -> None:
    ledger = InvocationLedger(store, WatchHub())
    ledger.open()
    start = ledger.resource_version
    s = ledger.begin("ns", "TaskAgent", "a", revision=None, trigger=None, execution_id="x")
    ledger.transition("ns", s.name, "Dispatched", worker="w")
    ledger.finish("ns", s.name, "Rejected", reason="NoWorker: none")
    events = ledger.events_since(start, "clrk.apoxy.dev", "invocations")
    assert [(e.type, e.object["status"]["phase"]) for e in events] == [
        ("ADDED", "Pending"), ("MODIFIED", "Dispatched"), ("MODIFIED", "Rejected")]
    assert events[1].previous is not None
    assert events[1].previous["status"]["phase"] == "Pending"


def test_logs_lines_limits_and_queries(store: TelemetryStore) -> None:
    logs = AgentLogs(store)
    src = Source("ns", "TaskAgent", "a", "a-1", "t" * 32, "s" * 16, "a-00001", "w")
    logs.write(src, "stdout", b"one\ntw")
    logs.write(src, "stderr", "caf\xe9 \u2603\n".encode() + b"\xff\n")
    logs.write(src, "stdout", b"o\n" + b"x" * (MAX_LINE + 10))
    logs.close(src)
    lines = logs.read(Query("ns", "TaskAgent", "a"))
    assert [(ln.stream, ln.message[:5]) for ln in lines] == [
        ("stdout", "one"), ("stderr", "caf\xe9 "), ("stderr", "\ufffd"), ("stdout", "two"),
        ("stdout", "x" * 5), ("stdout", "xxxxx")]
    assert len(lines[4].message) == MAX_LINE and len(lines[5].message) == 10
    assert len({ln.timestamp_ns for ln in lines}) == len(lines)  # strictly ordered
    stored = store.query("SELECT TraceId, ServiceName, ResourceAttributes['clrk.revision'], "
                         "SeverityText FROM otel_logs LIMIT 1")
    assert stored[0] == ("t" * 32, "a", "a-00001", "INFO")
    assert logs.read(Query("ns", "TaskAgent", "a", invocation="other")) == []
    assert logs.read(Query("ns", "DaemonAgent", "a")) == []
    after = logs.read(Query("ns", "TaskAgent", "a", after_ns=lines[1].timestamp_ns, limit=2))
    assert after == lines[2:4]


def test_time_parameters() -> None:
    now = 1_800_000_000 * 10**9
    assert parse_time("5m", now) == now - 300 * 10**9
    assert parse_time("2026-01-02T03:04:05.123456789Z") % 10**9 == 123456789
    assert parse_time("2026-01-02T03:04:05Z") % 10**9 == 0
    with pytest.raises(ValueError, match="yesterday"):
        parse_time("yesterday")


def test_an_invocation_adopts_its_warm_sandboxs_trace(store: TelemetryStore) -> None:
    """A warm sandbox's TRACEPARENT was fixed before its invocation existed: the
    Invocation takes its ids, and its span is written under them."""
    ledger = InvocationLedger(store, WatchHub())
    ledger.open()
    started = ledger.begin("default", "TaskAgent", "w", revision="w-00001", trigger="http",
                           execution_id="e1")
    trace_id, span_id = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"
    for bad in (("0" * 32, span_id), (trace_id.upper(), span_id), (trace_id, "b7ad")):
        with pytest.raises(ValueError):
            ledger.adopt("default", started.name, *bad)
    adopted = ledger.adopt("default", started.name, trace_id, span_id)
    assert adopted is not None and adopted["spec"]["traceId"] == trace_id
    ledger.finish("default", started.name, "Succeeded", exitCode=0)
    assert ledger.adopt("default", started.name, trace_id, span_id) is None  # finished
    spans = store.query("SELECT TraceId, SpanId FROM otel_traces WHERE "
                        "SpanAttributes['clrk.invocation'] = {inv:String}",
                        {"inv": started.name})
    assert spans == [(trace_id, span_id)]
