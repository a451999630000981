"""The process that owns a telemetry store path:
``python -m clrk.telemetry.owner FD [JOURNAL_DIR]``, the DSN in ``$CLRK_TELEMETRY_DSN``.

Requests arrive in order on one connection (the inherited socket FD): inserts carry
no reply, so they cost the sender only a write; a query is answered after every
insert sent before it, which keeps reads consistent with writes. With a journal
(:mod:`clrk.telemetry.journal`) the owner first writes what the previous run left
unwritten, then answers ``ok`` with the journal's next sequence number, and notes each
batch it writes so the journal can let go of it.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from clrk.telemetry.journal import JournalReader
from clrk.telemetry.store import COLUMNS, OWNER_DSN_VAR, BatchingStore, TelemetryError

log = logging.getLogger("clrk.telemetry")


def _replay(store: BatchingStore, journal: JournalReader) -> int:
    """Write what the journal holds past each table's mark; the next sequence number.

    A batch in doubt (its insert began, its end was not noted) went in whole or not at
    all: its first row says which.
    """
    pending, doubt, next_seq = journal.unflushed()
    for table, records in doubt.items():
        first = records[0][2][0] if records[0][2] else None
        if first is not None and store.present(table, first):
            continue
        pending += records
    pending.sort(key=lambda r: r[0])
    store.journal = journal  # a crash during the replay leaves it as exact as any other
    for seq, table, rows in pending:
        store.insert(table, rows, seq)
    store.flush()
    journal.drop_all(next_seq - 1)
    if pending:
        log.info("telemetry journal: replayed %d batch(es) the previous run had not written "
                 "(%d row(s))", len(pending), sum(len(r) for _, _, r in pending))
    return next_seq


def serve(conn: Connection, dsn: str, journal_dir: Path | None = None) -> None:
    store = BatchingStore(dsn)
    journal = JournalReader(journal_dir, list(COLUMNS)) if journal_dir is not None else None
    try:
        store.open()
        next_seq = _replay(store, journal) if journal is not None else 1
    except (TelemetryError, OSError) as err:
        conn.send(("error", str(err)))
        store.close()
        return
    conn.send(("ok", next_seq))
    try:
        while True:
            try:
                msg: tuple[Any, ...] = conn.recv()
            except EOFError:
                return
            op = msg[0]
            if op == "insert":
                store.insert(msg[1], msg[2], msg[3] if len(msg) > 3 else 0)
                continue
            try:
                if op == "query":
                    conn.send(("ok", store.query(msg[1], msg[2])))
                elif op == "flush":
                    store.flush()
                    conn.send(("ok", None))
                elif op == "close":
                    store.flush()
                    conn.send(("ok", None))
                    return
                else:
                    conn.send(("error", f"unknown request {op!r}"))
            except Exception as err:  # the caller gets the error, the owner keeps serving
                conn.send(("error", f"{type(err).__name__}: {err}"))
    finally:
        store.close()


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: "
                        "%(message)s")
    sock = socket.socket(fileno=int(sys.argv[1]))
    serve(Connection(sock.detach()), os.environ[OWNER_DSN_VAR],
          Path(sys.argv[2]) if len(sys.argv) > 2 else None)


if __name__ == "__main__":
    main()
