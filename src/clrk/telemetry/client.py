"""The API server's handle on the telemetry store, which lives in an owner process
(:mod:`clrk.telemetry.owner`), so chDB's work never stalls the API server's event loop
and each API server has its own chDB path whatever else runs in the process."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from clrk.telemetry.journal import JournalWriter
from clrk.telemetry.store import OWNER_DSN_VAR, TelemetryError, redacted

__all__ = ["TEED", "TelemetryError", "TelemetryStore", "dsn_for"]
TEED = ("otel_traces", "otel_logs")


def dsn_for(path: Path) -> str:
    return f"chdb://{Path(path).resolve()}"


class TelemetryStore:
    """Rows go to the owner without waiting; with ``journal_dir`` each batch is first
    appended to the journal, so a crash of both processes loses none of it."""

    def __init__(self, dsn: str, journal_dir: Path | None = None) -> None:
        self.dsn = dsn
        self.journal_dir = journal_dir
        self._journal: JournalWriter | None = None
        self._conn: Connection | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()  # one request on the wire at a time
        # Called with every batch of otel_traces / otel_logs rows (`clrk dev`'s OTLP
        # tee); it must not block, and may be called from any thread.
        self.tee: Callable[[str, Sequence[Sequence[Any]]], None] | None = None

    def open(self) -> None:
        ours, theirs = socket.socketpair()
        journal = [str(self.journal_dir)] if self.journal_dir is not None else []
        # The DSN goes in the environment, not the command line: a server's may hold a
        # password, and every process on the host can read another's arguments.
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "clrk.telemetry.owner", str(theirs.fileno()), *journal],
            pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL,
            env={**os.environ, OWNER_DSN_VAR: self.dsn})
        theirs.close()
        self._conn = Connection(ours.detach())
        status, detail = self._reply()
        if status != "ok":
            self.close()
            raise TelemetryError(str(detail))
        if self.journal_dir is not None:
            self._journal = JournalWriter(self.journal_dir, int(detail))

    def _reply(self) -> tuple[str, Any]:
        assert self._conn is not None
        try:
            reply: tuple[str, Any] = self._conn.recv()
        except (EOFError, OSError):
            raise TelemetryError(f"the telemetry store process for {redacted(self.dsn)} "
                                 "is gone") from None
        return reply

    def _call(self, *request: Any) -> Any:
        with self._lock:
            if self._conn is None:
                raise TelemetryError("the telemetry store is closed")
            try:
                self._conn.send(request)
            except OSError:
                raise TelemetryError(f"the telemetry store process for {redacted(self.dsn)} "
                                     "is gone") from None
            status, detail = self._reply()
        if status != "ok":
            raise TelemetryError(str(detail))
        return detail

    def insert(self, table: str, rows: Sequence[Sequence[Any]]) -> None:
        if not rows:
            return
        with self._lock:
            if self._conn is None:
                raise TelemetryError("the telemetry store is closed")
            seq = self._journal.append(table, rows) if self._journal is not None else 0
            with contextlib.suppress(OSError):  # a dead owner shows on the next query
                self._conn.send(("insert", table, list(rows), seq))
        if self.tee is not None and table in TEED:
            self.tee(table, rows)

    def flush(self) -> None:
        self._call("flush")

    def query(self, sql: str, parameters: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
        rows: list[tuple[Any, ...]] = self._call("query", sql, parameters or {})
        return rows

    def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(TelemetryError):
                self._call("close")
            with self._lock:
                self._conn.close()
                self._conn = None
                if self._journal is not None:
                    self._journal.close()
                    self._journal = None
        if self._proc is not None:
            try:
                self._proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            self._proc = None
