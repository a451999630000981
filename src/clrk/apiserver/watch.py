"""Fan-out of store events to open watches."""

from __future__ import annotations

import asyncio
from collections import defaultdict

from clrk.apiserver.storage import Event


class WatchHub:
    """Each watch gets an unbounded queue of the events of one resource."""

    def __init__(self) -> None:
        self._subs: dict[tuple[str, str], set[asyncio.Queue[Event | None]]] = defaultdict(set)

    def subscribe(self, group: str, plural: str) -> asyncio.Queue[Event | None]:
        q: asyncio.Queue[Event | None] = asyncio.Queue()
        self._subs[(group, plural)].add(q)
        return q

    def unsubscribe(self, group: str, plural: str, q: asyncio.Queue[Event | None]) -> None:
        self._subs[(group, plural)].discard(q)

    def publish(self, event: Event) -> None:
        for q in self._subs.get((event.group, event.plural), ()):
            q.put_nowait(event)

    def close_all(self) -> None:
        """Ends every watch stream (server shutdown)."""
        for subs in self._subs.values():
            for q in subs:
                q.put_nowait(None)
