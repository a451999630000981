"""Watches: fan-out of committed events, and the stream one watch request receives.

Kubernetes semantics: without a resourceVersion the stream starts with every current
object as ADDED; with one it replays the event log after it (410 Gone when that part
of the log is no longer kept); then it follows live events. Each logged event carries
the object's previous state, so with a selector an object entering the selection is
ADDED and one leaving it is DELETED.
"""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Protocol

from clrk.api.base import KindInfo
from clrk.apiserver.errors import APIError
from clrk.apiserver.selectors import Selector
from clrk.apiserver.storage import Event, Obj
from clrk.apiserver.tables import table


class ReadSource(Protocol):
    """What a list or watch reads: the SQLite store, or a kind kept elsewhere."""

    @property
    def resource_version(self) -> int: ...

    def oldest_retained(self) -> int: ...

    def events_since(self, rv: int, group: str, plural: str) -> list[Event]: ...

    def list_objects(self, group: str, plural: str, namespace: str | None = None
                     ) -> list[Obj]: ...


class ReadOnlyKind(ReadSource, Protocol):
    """A kind the system writes outside SQLite; the API serves it read-only."""

    def get(self, namespace: str, name: str) -> Obj | None: ...


def _on(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False


class WatchHub:
    """Each watch gets an unbounded queue of the events of one resource."""

    def __init__(self) -> None:
        self._subs: dict[tuple[str, str], set[asyncio.Queue[Event | None]]] = defaultdict(set)
        try:  # the loop whose watches it feeds (else the first subscriber's)
            self._loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            self._loop = None

    def subscribe(self, group: str, plural: str) -> asyncio.Queue[Event | None]:
        self._loop = asyncio.get_running_loop()
        q: asyncio.Queue[Event | None] = asyncio.Queue()
        self._subs[(group, plural)].add(q)
        return q

    def unsubscribe(self, group: str, plural: str, q: asyncio.Queue[Event | None]) -> None:
        self._subs[(group, plural)].discard(q)

    def publish(self, event: Event) -> None:
        """From the loop, or from a write computed in a worker thread (delivered on the
        loop, in order, before that write's reply)."""
        loop = self._loop
        if loop is not None and not _on(loop):
            loop.call_soon_threadsafe(self._deliver, event)
        else:
            self._deliver(event)

    def _deliver(self, event: Event) -> None:
        for q in self._subs.get((event.group, event.plural), ()):
            q.put_nowait(event)

    def close_all(self) -> None:
        """Ends every watch stream (server shutdown)."""
        for subs in self._subs.values():
            for q in subs:
                q.put_nowait(None)


@dataclass(frozen=True)
class WatchParams:
    info: KindInfo
    selector: Selector
    namespace: str | None
    name: str | None
    since: int | None  # None: start with the current state
    initial_bookmark: bool  # sendInitialEvents: mark the end of the initial ADDEDs
    bookmarks: bool
    timeout: float | None
    table_include: str | None  # set when the client asked for Table rows
    bookmark_interval: float

    def relevant(self, obj: Obj | None) -> bool:
        if obj is None:
            return False
        md = obj.get("metadata", {})
        if self.namespace is not None and md.get("namespace", "") != self.namespace:
            return False
        if self.name and md.get("name") != self.name:
            return False
        return self.selector.matches(obj)

    def line(self, kind: str, obj: Obj) -> bytes:
        if self.table_include is not None and kind not in ("BOOKMARK", "ERROR"):
            obj = table(self.info, [obj], self.table_include, {})
        return json.dumps({"type": kind, "object": obj}, separators=(",", ":")).encode() \
            + b"\n"

    def bookmark(self, rv: int, end: bool = False) -> bytes:
        md: dict[str, Any] = {"resourceVersion": str(rv)}
        if end:
            md["annotations"] = {"k8s.io/initial-events-end": "true"}
        return self.line("BOOKMARK", {"kind": self.info.kind,
                                      "apiVersion": self.info.api_version, "metadata": md})

    def translate(self, ev: Event) -> bytes | None:
        was = self.relevant(ev.previous)
        if ev.type == "DELETED":
            return self.line("DELETED", ev.object) if was else None
        if self.relevant(ev.object):
            return self.line("MODIFIED" if was else "ADDED", ev.object)
        return self.line("DELETED", ev.object) if was else None


async def stream(store: ReadSource, hub: WatchHub, p: WatchParams) -> AsyncIterator[bytes]:
    group, plural = p.info.group, p.info.plural
    queue = hub.subscribe(group, plural)
    try:
        last = store.resource_version
        if p.since is None:
            for obj in store.list_objects(group, plural, p.namespace):
                if p.relevant(obj):
                    yield p.line("ADDED", obj)
            if p.initial_bookmark and p.bookmarks:
                yield p.bookmark(last, end=True)
        else:
            if p.since < store.oldest_retained():
                err = APIError(410, f"too old resource version: {p.since} "
                               f"({store.oldest_retained() + 1})", "Expired")
                yield p.line("ERROR", err.status())
                return
            last = p.since
            for ev in store.events_since(p.since, group, plural):
                last = ev.rv
                if out := p.translate(ev):
                    yield out
        loop = asyncio.get_running_loop()
        deadline = loop.time() + p.timeout if p.timeout else None
        while True:
            wait = p.bookmark_interval if p.bookmarks else None
            if deadline is not None:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    return
                wait = min(wait, remaining) if wait else remaining
            try:
                got: Event | None = await asyncio.wait_for(queue.get(), wait)
            except TimeoutError:
                if p.bookmarks:
                    yield p.bookmark(max(last, store.resource_version))
                continue
            if got is None:
                return
            if got.rv <= last:
                continue
            last = got.rv
            if out := p.translate(got):
                yield out
    finally:
        hub.unsubscribe(group, plural, queue)
