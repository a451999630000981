"""The process that owns a telemetry store path: ``python -m clrk.telemetry.owner FD DSN``.

Requests arrive in order on one connection (the inherited socket FD): inserts carry
no reply, so they cost the sender only a write; a query is answered after every
insert sent before it, which keeps reads consistent with writes.
"""

from __future__ import annotations

import logging
import socket
import sys
from multiprocessing.connection import Connection
from typing import Any

from clrk.telemetry.store import BatchingStore, TelemetryError


def serve(conn: Connection, dsn: str) -> None:
    store = BatchingStore(dsn)
    try:
        store.open()
    except TelemetryError as err:
        conn.send(("error", str(err)))
        return
    conn.send(("ok", None))
    try:
        while True:
            try:
                msg: tuple[Any, ...] = conn.recv()
            except EOFError:
                return
            op = msg[0]
            if op == "insert":
                store.insert(msg[1], msg[2])
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
    serve(Connection(sock.detach()), sys.argv[2])


if __name__ == "__main__":
    main()
