"""SQLite storage for API objects and the watch event log.

WAL with synchronous=FULL: a write is on disk before the API answers. One global,
monotonic resourceVersion; every write appends to the event log in the same
transaction, so a watch can resume from any retained version, across restarts.
"""

from __future__ import annotations

import functools
import json
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, cast

Obj = dict[str, Any]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS objects (
    grp TEXT NOT NULL, plural TEXT NOT NULL, namespace TEXT NOT NULL, name TEXT NOT NULL,
    uid TEXT NOT NULL, rv INTEGER NOT NULL, body TEXT NOT NULL,
    PRIMARY KEY (grp, plural, namespace, name)
);
CREATE INDEX IF NOT EXISTS objects_uid ON objects (uid);
CREATE TABLE IF NOT EXISTS events (
    rv INTEGER PRIMARY KEY, grp TEXT NOT NULL, plural TEXT NOT NULL,
    namespace TEXT NOT NULL, name TEXT NOT NULL, type TEXT NOT NULL, body TEXT NOT NULL,
    previous TEXT
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


@dataclass(frozen=True)
class Key:
    group: str
    plural: str
    namespace: str  # "" for cluster-scoped kinds
    name: str


@dataclass(frozen=True)
class Event:
    rv: int
    type: str  # ADDED | MODIFIED | DELETED
    group: str
    plural: str
    namespace: str
    name: str
    object: Obj
    previous: Obj | None = None  # the state before this event (None for ADDED)


class TooOld(Exception):
    """A version older than the retained event log."""

    def __init__(self, rv: int, oldest: int) -> None:
        super().__init__(f"too old resource version: {rv} ({oldest})")
        self.rv = rv
        self.oldest = oldest


F = TypeVar("F", bound=Callable[..., Any])


def _locked(method: F) -> F:
    @functools.wraps(method)
    def wrapper(self: Store, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            return method(self, *args, **kwargs)
    return cast(F, wrapper)


class Store:
    """Objects by (group, plural, namespace, name) plus an event log for watches."""

    def __init__(self, path: Path, history: int = 10_000) -> None:
        self.history = history
        # Writes are computed in a worker thread while the event loop serves reads: one
        # lock keeps each read out of a write's transaction.
        self._lock = threading.RLock()
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)
        row = self._db.execute("SELECT value FROM meta WHERE key='rv'").fetchone()
        self._rv = int(row[0]) if row else 0

    @_locked
    def close(self) -> None:
        self._db.close()

    @property
    def resource_version(self) -> int:
        return self._rv

    @_locked
    def oldest_retained(self) -> int:
        """The newest version a watch cannot resume after (everything later is retained)."""
        row = self._db.execute("SELECT MIN(rv) FROM events").fetchone()
        return (int(row[0]) - 1) if row and row[0] is not None else self._rv

    @_locked
    def get(self, key: Key) -> Obj | None:
        row = self._db.execute(
            "SELECT body FROM objects WHERE grp=? AND plural=? AND namespace=? AND name=?",
            (key.group, key.plural, key.namespace, key.name),
        ).fetchone()
        return json.loads(row[0]) if row else None

    @_locked
    def list_objects(self, group: str, plural: str, namespace: str | None = None
                     ) -> list[Obj]:
        sql = "SELECT body FROM objects WHERE grp=? AND plural=?"
        args: tuple[str, ...] = (group, plural)
        if namespace is not None:
            sql += " AND namespace=?"
            args += (namespace,)
        sql += " ORDER BY namespace, name"
        return [json.loads(r[0]) for r in self._db.execute(sql, args)]

    @_locked
    def count_in_namespace(self, namespace: str) -> int:
        row = self._db.execute("SELECT COUNT(*) FROM objects WHERE namespace=?",
                               (namespace,)).fetchone()
        return int(row[0])

    @_locked
    def keys_in_namespace(self, namespace: str) -> list[Key]:
        return [Key(*r) for r in self._db.execute(
            "SELECT grp, plural, namespace, name FROM objects WHERE namespace=?", (namespace,))]

    @_locked
    def has_uid(self, uid: str) -> bool:
        return self._db.execute("SELECT 1 FROM objects WHERE uid=? LIMIT 1",
                                (uid,)).fetchone() is not None

    @_locked
    def with_owners(self) -> list[tuple[Key, Obj]]:
        """Objects that have ownerReferences."""
        out = []
        for g, p, ns, n, body in self._db.execute(
            "SELECT grp, plural, namespace, name, body FROM objects WHERE body LIKE ?",
            ('%"ownerReferences"%',),
        ):
            obj = json.loads(body)
            if obj.get("metadata", {}).get("ownerReferences"):
                out.append((Key(g, p, ns, n), obj))
        return out

    @_locked
    def owned_by(self, uid: str) -> list[tuple[Key, Obj]]:
        """Objects whose ownerReferences name ``uid``."""
        out = []
        for g, p, ns, n, body in self._db.execute(
            "SELECT grp, plural, namespace, name, body FROM objects WHERE body LIKE ?",
            (f'%"{uid}"%',),
        ):
            obj = json.loads(body)
            refs = obj.get("metadata", {}).get("ownerReferences") or []
            if any(r.get("uid") == uid for r in refs):
                out.append((Key(g, p, ns, n), obj))
        return out

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        else:
            self._db.execute("COMMIT")

    def next_rv(self) -> int:
        return self._rv + 1

    @_locked
    def put(self, key: Key, obj: Obj, event_type: str) -> Event:
        previous = self.get(key)
        rv = self._rv + 1
        obj["metadata"]["resourceVersion"] = str(rv)
        body = json.dumps(obj, separators=(",", ":"))
        prev_body = json.dumps(previous, separators=(",", ":")) if previous else None
        with self._tx() as db:
            db.execute(
                "INSERT INTO objects (grp, plural, namespace, name, uid, rv, body) "
                "VALUES (?,?,?,?,?,?,?) ON CONFLICT (grp, plural, namespace, name) "
                "DO UPDATE SET uid=excluded.uid, rv=excluded.rv, body=excluded.body",
                (key.group, key.plural, key.namespace, key.name,
                 obj["metadata"].get("uid", ""), rv, body),
            )
            self._log(db, rv, key, event_type, body, prev_body)
        self._rv = rv
        return Event(rv, event_type, key.group, key.plural, key.namespace, key.name, obj,
                     previous)

    @_locked
    def delete(self, key: Key, obj: Obj) -> Event:
        """Removes ``key``; ``obj`` is its final state (e.g. with finalizers emptied)."""
        previous = self.get(key) or obj
        rv = self._rv + 1
        obj["metadata"]["resourceVersion"] = str(rv)
        body = json.dumps(obj, separators=(",", ":"))
        prev_body = json.dumps(previous, separators=(",", ":"))
        with self._tx() as db:
            db.execute(
                "DELETE FROM objects WHERE grp=? AND plural=? AND namespace=? AND name=?",
                (key.group, key.plural, key.namespace, key.name),
            )
            self._log(db, rv, key, "DELETED", body, prev_body)
        self._rv = rv
        return Event(rv, "DELETED", key.group, key.plural, key.namespace, key.name, obj,
                     previous)

    def _log(self, db: sqlite3.Connection, rv: int, key: Key, event_type: str,
             body: str, previous: str | None) -> None:
        db.execute(
            "INSERT INTO events (rv, grp, plural, namespace, name, type, body, previous) "
            "VALUES (?,?,?,?,?,?,?,?)",
            (rv, key.group, key.plural, key.namespace, key.name, event_type, body, previous),
        )
        db.execute("INSERT INTO meta (key, value) VALUES ('rv', ?) "
                   "ON CONFLICT (key) DO UPDATE SET value=excluded.value", (str(rv),))
        # Exactly the newest `history` events are kept (a range delete on the primary key).
        db.execute("DELETE FROM events WHERE rv <= ?", (rv - self.history,))

    @_locked
    def list_at(self, rv: int, group: str, plural: str, namespace: str | None = None
                ) -> list[Obj]:
        """The objects as they were at ``rv``: today's, with the retained log undone.

        Raises :class:`TooOld` when the log no longer reaches back to ``rv``.
        """
        if rv < self.oldest_retained():
            raise TooOld(rv, self.oldest_retained() + 1)
        state = {(o["metadata"].get("namespace", ""), o["metadata"]["name"]): o
                 for o in self.list_objects(group, plural, namespace)}
        for ev in reversed(self.events_since(rv, group, plural)):
            if namespace is not None and ev.namespace != namespace:
                continue
            if ev.type == "ADDED" or ev.previous is None:
                state.pop((ev.namespace, ev.name), None)
            else:
                state[(ev.namespace, ev.name)] = ev.previous
        return [state[k] for k in sorted(state)]

    @_locked
    def events_since(self, rv: int, group: str, plural: str) -> list[Event]:
        return [
            Event(r, t, g, p, ns, n, json.loads(body), json.loads(prev) if prev else None)
            for r, g, p, ns, n, t, body, prev in self._db.execute(
                "SELECT rv, grp, plural, namespace, name, type, body, previous FROM events "
                "WHERE rv > ? AND grp=? AND plural=? ORDER BY rv", (rv, group, plural))
        ]
