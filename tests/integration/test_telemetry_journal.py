"""The telemetry journal: what the API server handed to the store survives a kill -9 of
both processes, and only what never finished is Interrupted."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from clrk.apiserver.watch import WatchHub
from clrk.telemetry.client import TelemetryStore, dsn_for
from clrk.telemetry.invocations import InvocationLedger
from clrk.telemetry.journal import HEADER, JournalReader, JournalWriter
from clrk.telemetry.logs import AgentLogs, Query, Source


def killed(store: TelemetryStore) -> None:
    """The crash: the owner dies by SIGKILL with its batch unwritten, and this process
    (the API server) does nothing more, as if it died at the same instant."""
    assert store._proc is not None
    os.kill(store._proc.pid, signal.SIGKILL)
    store._proc.wait()
    store._proc = None
    if store._journal is not None:
        store._journal.close()


def test_answered_outcomes_and_lines_survive_kill_9(tmp_path: Path) -> None:
    dsn, journal = dsn_for(tmp_path / "db"), tmp_path / "journal"
    store = TelemetryStore(dsn, journal_dir=journal)
    store.open()
    ledger = InvocationLedger(store, WatchHub())
    ledger.open()
    logs = AgentLogs(store)
    answered = []
    for i in range(20):
        inv = ledger.begin("default", "TaskAgent", "a", revision=None, trigger="http",
                           execution_id=f"e{i}")
        ledger.transition("default", inv.name, "Running")
        source = Source("default", "TaskAgent", "a", inv.name, inv.trace_id, inv.span_id)
        logs.write(source, "stdout", f"line one of {i}\nline two of {i}".encode())
        logs.write(source, "stderr", f"err {i}\n".encode())
        logs.close(source)
        ledger.finish("default", inv.name, "Succeeded", exitCode=0)
        answered.append(inv.name)
    running = ledger.begin("default", "TaskAgent", "a", revision=None, trigger="http",
                           execution_id="never")
    ledger.transition("default", running.name, "Running")
    killed(store)  # within the owner's 0.2 s batch window: nothing was written yet

    store = TelemetryStore(dsn, journal_dir=journal)
    store.open()
    try:
        ledger = InvocationLedger(store, WatchHub())
        ledger.open()
        for name in answered:
            obj = ledger.get("default", name)
            assert obj is not None and obj["status"]["phase"] == "Succeeded", obj
            lines = AgentLogs(store).read(Query("default", "TaskAgent", "a", invocation=name))
            assert sorted(ln.message for ln in lines) == sorted(
                [f"line one of {name_index(answered, name)}",
                 f"line two of {name_index(answered, name)}",
                 f"err {name_index(answered, name)}"])
        again = ledger.get("default", running.name)
        assert again is not None and again["status"]["phase"] == "Failed"
        assert again["status"]["reason"].startswith("Interrupted")
        spans = store.query("SELECT count() FROM otel_traces")
        assert spans[0][0] == len(answered) + 1  # each outcome's span, once
        # The journal let go of what the store has.
        assert JournalReader(journal).unflushed()[0] == []
    finally:
        store.close()


def name_index(names: list[str], name: str) -> int:
    return names.index(name)


def test_journal_segments_torn_tail_and_cleanup(tmp_path: Path) -> None:
    writer = JournalWriter(tmp_path, next_seq=1, segment_bytes=200)
    for i in range(10):
        assert writer.append("otel_logs", [[i, "x" * 50]]) == i + 1
    writer.close()
    segments = sorted(tmp_path.glob("*.journal"))
    assert len(segments) > 2
    # A write the kill cut short: its header promises more than the file holds.
    with segments[-1].open("ab") as f:
        f.write(HEADER.pack(1000, 11) + b"partial")
    reader = JournalReader(tmp_path)
    pending, next_seq = reader.unflushed()
    assert [seq for seq, _, _ in pending] == list(range(1, 11))
    assert pending[3][1:] == ("otel_logs", [[3, "x" * 50]])
    assert next_seq == 11
    reader.mark_flushed(6)
    assert reader.flushed() == 6
    left = sorted(tmp_path.glob("*.journal"))
    assert left and int(left[0].name.split(".")[0]) <= 7  # what holds 7.. stays
    assert [seq for seq, _, _ in reader.unflushed()[0]] == list(range(7, 11))
    reader.drop_all(10)
    assert list(tmp_path.glob("*.journal")) == []
    assert reader.unflushed() == ([], 11)
