"""The telemetry store's owner: one clickhouse-connect client (``chdb://PATH`` embedded,
or ``http(s)://`` for a server), batched inserts, and read-your-writes queries.

chDB inserts cost ~10 ms each whatever their size, so rows are buffered and written
in batches every ``flush_interval`` (or sooner when a batch fills); a query first
writes what is buffered, so a reader always sees every row handed to the store.
chDB allows one open path per process and holds the GIL while it works, so this runs
in a process of its own (:mod:`clrk.telemetry.owner`); the API server talks to it
through :class:`clrk.telemetry.client.TelemetryStore`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import clickhouse_connect
from clickhouse_connect.driver.exceptions import ClickHouseError

from clrk.telemetry import schema
from clrk.telemetry.journal import JournalReader

log = logging.getLogger("clrk.telemetry")
COLUMNS = {"otel_logs": schema.LOG_COLUMNS, "otel_traces": schema.TRACE_COLUMNS,
           "clrk_invocations": schema.INVOCATION_COLUMNS}
# What identifies a row, for the journal's replay of a batch in doubt.
KEYS = {"otel_logs": ("Timestamp", "TraceId", "Body"),
        "otel_traces": ("TraceId", "SpanId", "Timestamp"),
        "clrk_invocations": ("Namespace", "Name", "ResourceVersion")}
TYPES = {"Timestamp": "DateTime64(9)", "TraceId": "String", "SpanId": "String",
         "Body": "String", "Namespace": "String", "Name": "String",
         "ResourceVersion": "UInt64"}


OWNER_DSN_VAR = "CLRK_TELEMETRY_DSN"  # how the owner process (owner.py) gets its DSN


class TelemetryError(Exception):
    pass


def redacted(dsn: str) -> str:
    """The DSN as logs and errors may show it: without a password."""
    parts = urlsplit(dsn)
    userinfo, at, host = parts.netloc.rpartition("@")
    if not at or ":" not in userinfo:
        return dsn
    user = userinfo.split(":", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def check_server_url(url: str) -> str:
    """A ClickHouse server's HTTP interface URL (``http(s)://[user:password@]host[:port]
    [/database]``), or ValueError saying what is wrong with it."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"{redacted(url)!r}: the scheme must be http or https (ClickHouse's "
                         "HTTP interface)")
    if not parts.hostname:
        raise ValueError(f"{redacted(url)!r}: no host")
    try:
        parts.port  # noqa: B018 (it raises on a port that is not a number)
    except ValueError:
        raise ValueError(f"{redacted(url)!r}: the port is not a number") from None
    if parts.query or parts.fragment:
        raise ValueError(f"{redacted(url)!r}: settings go in the server's configuration, "
                         "not in the URL")
    return url


class BatchingStore:
    def __init__(self, dsn: str, *, flush_interval: float = 0.2, batch: int = 5000) -> None:
        self.dsn = dsn
        self.flush_interval = flush_interval
        self.batch = batch
        self._lock = threading.RLock()
        self._pending: dict[str, list[Sequence[Any]]] = {t: [] for t in COLUMNS}
        self._wake = threading.Event()
        self._closed = threading.Event()
        self._client: Any = None
        self._thread: threading.Thread | None = None
        self._seen = 0  # the journal's number of the newest rows queued
        self.journal: JournalReader | None = None  # noted before and after each insert

    def open(self) -> None:
        if self.dsn.startswith("chdb://"):
            Path(self.dsn.removeprefix("chdb://")).mkdir(parents=True, exist_ok=True)
        try:
            self._client = clickhouse_connect.get_client(dsn=self.dsn)
            existed = self._client.query("EXISTS TABLE clrk_calls").result_rows[0][0]
            for ddl in schema.TABLES:
                self._client.command(ddl)
            if not existed:  # a store from before clrk_calls: its spans are reduced once
                self._client.command(schema.CALLS_BACKFILL)
        except ClickHouseError as err:
            raise TelemetryError(f"cannot open the telemetry store {redacted(self.dsn)}: "
                                 f"{err}") from err
        self._thread = threading.Thread(target=self._flusher, name="telemetry-flush",
                                        daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._closed.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
        with self._lock:
            if self._client is not None:
                self._flush_locked()
                self._client.close()
                self._client = None

    def insert(self, table: str, rows: Sequence[Sequence[Any]], seq: int = 0) -> None:
        """Queue rows (in ``COLUMNS[table]`` order) for the next batch; ``seq`` is their
        number in the journal, noted there once they are written."""
        with self._lock:
            pending = self._pending[table]
            pending.extend(rows)
            self._seen = max(self._seen, seq)
            if len(pending) >= self.batch:
                self._wake.set()

    def flush(self) -> None:
        with self._lock:
            self._flush_locked()

    def query(self, sql: str, parameters: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
        with self._lock:
            self._flush_locked()
            if self._client is None:
                raise TelemetryError("the telemetry store is closed")
            return list(self._client.query(sql, parameters=parameters or {}).result_rows)

    def _flush_locked(self) -> None:
        if self._client is None:
            return
        seen, journal = self._seen, self.journal
        for table, rows in self._pending.items():
            if journal is not None and seen and journal.flushed.get(table) == seen:
                continue  # nothing new for this table since its last mark
            if rows:
                self._pending[table] = []
                if journal is not None and seen:
                    journal.begin(table, seen)
                try:
                    self._client.insert(table, rows, column_names=list(COLUMNS[table]))
                except (ClickHouseError, ValueError, TypeError) as err:
                    # Dropping is better than retrying a batch that can never succeed; the
                    # error names the table so a schema problem is visible at once.
                    log.error("dropped %d row(s) for %s: %s", len(rows), table, err)
            if journal is not None and seen:
                journal.done(table, seen)  # every row of the table up to ``seen`` is in

    def present(self, table: str, row: Sequence[Any]) -> bool:
        """Whether ``row`` (a whole inserted row) is in the store, by its identity."""
        names = KEYS[table]
        where = " AND ".join(f"{c} = {{p{i}:{TYPES[c]}}}" for i, c in enumerate(names))
        params = {f"p{i}": row[COLUMNS[table].index(c)] for i, c in enumerate(names)}
        with self._lock:
            self._flush_locked()
            found = self._client.query(f"SELECT count() FROM {table} WHERE {where}",
                                       parameters=params).result_rows
        return bool(found and found[0][0])

    def _flusher(self) -> None:
        while not self._closed.is_set():
            self._wake.wait(self.flush_interval)
            self._wake.clear()
            try:
                self.flush()
            except Exception:  # keep flushing whatever one batch did
                log.exception("telemetry flush failed")
