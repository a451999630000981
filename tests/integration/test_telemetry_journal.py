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
        assert JournalReader(journal, ['otel_logs']).unflushed()[:2] == ([], {})
    finally:
        store.close()


def name_index(names: list[str], name: str) -> int:
    return names.index(name)


def test_journal_segments_torn_tail_and_cleanup(tmp_path: Path) -> None:
    writer = JournalWriter(tmp_path, next_seq=1, segment_bytes=200)
    for i in range(10):
        table = "otel_logs" if i % 2 == 0 else "otel_traces"
        assert writer.append(table, [[i, "x" * 50]]) == i + 1
    writer.close()
    segments = sorted(tmp_path.glob("*.journal"))
    assert len(segments) > 2
    # A write the kill cut short: its header promises more than the file holds.
    with segments[-1].open("ab") as f:
        f.write(HEADER.pack(1000, 11) + b"partial")
    tables = ["otel_logs", "otel_traces"]
    reader = JournalReader(tmp_path, tables)
    pending, doubt, next_seq = reader.unflushed()
    assert [seq for seq, _, _ in pending] == list(range(1, 11))
    assert pending[3][1:] == ("otel_traces", [[3, "x" * 50]])
    assert doubt == {} and next_seq == 11
    # otel_logs written up to 6, otel_traces up to 4, and its batch up to 8 in doubt.
    reader.done("otel_logs", 6)
    reader.begin("otel_traces", 8)
    reader.done("otel_traces", 4)
    reader = JournalReader(tmp_path, tables)  # as the next start reads it
    pending, doubt, next_seq = reader.unflushed()
    assert [seq for seq, _, _ in pending] == [7, 9, 10]
    assert [seq for seq, _, _ in doubt["otel_traces"]] == [6, 8]
    left = sorted(tmp_path.glob("*.journal"))
    assert left and int(left[0].name.split(".")[0]) <= 5  # what holds 5.. stays
    reader.drop_all(10)
    assert list(tmp_path.glob("*.journal")) == []
    assert JournalReader(tmp_path, tables).unflushed() == ([], {}, 11)


def test_a_batch_in_doubt_is_written_once(tmp_path: Path) -> None:
    """The owner died between an insert and its note: the replay finds the batch's first
    row in the store and does not write it again; a batch that did not go in is written."""
    dsn, journal = dsn_for(tmp_path / "db"), tmp_path / "journal"
    store = TelemetryStore(dsn, journal_dir=journal)
    store.open()
    ledger = InvocationLedger(store, WatchHub())
    ledger.open()
    inv = ledger.begin("default", "TaskAgent", "a", revision=None, trigger="http",
                       execution_id="e")
    logs = AgentLogs(store)
    source = Source("default", "TaskAgent", "a", inv.name, inv.trace_id, inv.span_id)
    logs.write(source, "stdout", b"written once\n")
    ledger.finish("default", inv.name, "Succeeded", exitCode=0)
    store.flush()  # in the store, and noted
    killed(store)
    reader = JournalReader(journal, ["otel_logs", "otel_traces", "clrk_invocations"])
    for table in reader.tables:  # as if the notes after the inserts never happened
        reader.flushing[table], reader.flushed[table] = reader.flushed[table], 0
    reader._save()
    store = TelemetryStore(dsn, journal_dir=journal)
    store.open()
    try:
        lines = AgentLogs(store).read(Query("default", "TaskAgent", "a", invocation=inv.name))
        assert [ln.message for ln in lines] == ["written once"]
        assert store.query("SELECT count() FROM otel_traces")[0][0] == 1
        again = InvocationLedger(store, WatchHub())
        again.open()
        assert again.get("default", inv.name)["status"]["phase"] == "Succeeded"  # type: ignore[index]
    finally:
        store.close()
