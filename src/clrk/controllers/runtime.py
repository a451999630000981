"""The controller runtime: watches feed a work queue; workers reconcile keys.

Level-triggered: events only say *which* object to look at; a reconcile always
reads current state. A key is never reconciled by two workers at once; failures
are retried with exponential backoff; a periodic resync catches anything missed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from lightkube import AsyncClient

from clrk.api.base import Resource
from clrk.client import resource_class

log = logging.getLogger("clrk.controllers")

Key = tuple[str, str]  # (namespace, name)
Mapper = Callable[[Any], Awaitable[Iterable[Key]]]
ReconcileFn = Callable[[Key], Awaitable[float | None]]


class Backoff:
    """Per-key exponential backoff: base * 2^failures, capped."""

    def __init__(self, base: float = 0.5, cap: float = 60.0) -> None:
        self.base = base
        self.cap = cap
        self._failures: dict[Key, int] = {}

    def next(self, key: Key) -> float:
        n = self._failures.get(key, 0)
        self._failures[key] = n + 1
        return float(min(self.cap, self.base * (2 ** n)))

    def reset(self, key: Key) -> None:
        self._failures.pop(key, None)


class WorkQueue:
    """De-duplicating queue; a key being processed is re-queued once it finishes."""

    def __init__(self) -> None:
        self._queue: asyncio.Queue[Key] = asyncio.Queue()
        self._queued: set[Key] = set()
        self._active: set[Key] = set()
        self._dirty: set[Key] = set()
        self._timers: dict[Key, asyncio.TimerHandle] = {}

    def add(self, key: Key) -> None:
        if key in self._active:
            self._dirty.add(key)
            return
        if key in self._queued:
            return
        self._queued.add(key)
        self._queue.put_nowait(key)

    def add_after(self, key: Key, delay: float) -> None:
        old = self._timers.pop(key, None)
        if old is not None:
            old.cancel()
        loop = asyncio.get_running_loop()
        self._timers[key] = loop.call_later(delay, self._fire, key)

    def _fire(self, key: Key) -> None:
        self._timers.pop(key, None)
        self.add(key)

    async def get(self) -> Key:
        key = await self._queue.get()
        self._queued.discard(key)
        self._active.add(key)
        return key

    def done(self, key: Key) -> None:
        self._active.discard(key)
        if key in self._dirty:
            self._dirty.discard(key)
            self.add(key)

    def close(self) -> None:
        for t in self._timers.values():
            t.cancel()
        self._timers.clear()

    def __len__(self) -> int:
        return self._queue.qsize()


@dataclass
class Watch:
    """A watched kind and how its events map to keys of the controller's primary kind."""

    kind: type[Resource]
    mapper: Mapper | None = None  # None: the object's own key


@dataclass
class Controller:
    name: str
    primary: type[Resource]
    reconcile: ReconcileFn
    secondary: list[Watch] = field(default_factory=list)
    concurrency: int = 2
    # How the primary kind's events map to keys (None: the object's own key).
    primary_mapper: Mapper | None = None
    resync_seconds: float = 300.0


async def _own_key(obj: Any) -> Iterable[Key]:
    md = obj.metadata
    return [(md.namespace or "", md.name)]


class Runner:
    """Runs one controller: its watches, its queue and its workers."""

    def __init__(self, client: AsyncClient, controller: Controller) -> None:
        self.client = client
        self.c = controller
        self.queue = WorkQueue()
        self.backoff = Backoff()

    async def run(self, stop: asyncio.Event) -> None:
        watches = [Watch(self.c.primary, self.c.primary_mapper), *self.c.secondary]
        tasks = [asyncio.create_task(self._watch(w), name=f"{self.c.name}-watch")
                 for w in watches]
        tasks += [asyncio.create_task(self._worker(), name=f"{self.c.name}-worker")
                  for _ in range(max(1, self.c.concurrency))]
        tasks.append(asyncio.create_task(self._resync(), name=f"{self.c.name}-resync"))
        try:
            await stop.wait()
        finally:
            for t in tasks:
                t.cancel()
            for t in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await t
            self.queue.close()

    async def _watch(self, w: Watch) -> None:
        res = resource_class(w.kind)
        mapper = w.mapper or _own_key
        failures = 0
        while True:
            try:
                # No resourceVersion: the server sends every current object as ADDED first,
                # so a (re)start of the watch is also a full re-list.
                async for _op, obj in self.client.watch(res, namespace="*"):
                    failures = 0
                    for key in await mapper(obj):
                        self.queue.add(key)
            except asyncio.CancelledError:
                raise
            except Exception as err:
                delay = min(30.0, 0.5 * (2 ** failures))
                failures += 1
                log.warning("%s: watch of %s failed (%s); re-listing in %.1fs",
                            self.c.name, w.kind.kind_info.plural, err, delay)
                await asyncio.sleep(delay)

    async def _resync(self) -> None:
        res = resource_class(self.c.primary)
        while True:
            await asyncio.sleep(self.c.resync_seconds)
            with contextlib.suppress(Exception):
                async for obj in self.client.list(res, namespace="*"):
                    for key in await (self.c.primary_mapper or _own_key)(obj):
                        self.queue.add(key)

    async def _worker(self) -> None:
        while True:
            key = await self.queue.get()
            try:
                after = await self.c.reconcile(key)
            except asyncio.CancelledError:
                self.queue.done(key)
                raise
            except Exception as err:
                delay = self.backoff.next(key)
                log.warning("%s: reconcile %s/%s failed: %s; retrying in %.1fs",
                            self.c.name, key[0], key[1], err, delay)
                self.queue.add_after(key, delay)
            else:
                self.backoff.reset(key)
                if after:
                    self.queue.add_after(key, after)
            finally:
                self.queue.done(key)
