"""The warm pool: sandboxes started ahead for TaskAgents with ``warmPoolSize``.

A warm sandbox has its network, its metadata slot and a running agent that is blocked
on its first read of stdin (or on ``GET /v1/event``), so an invocation only writes the
envelope. Its env, TRACEPARENT included, is fixed when it starts, so it gets trace and
span ids of its own, which the invocation it serves adopts. Each sandbox serves one
execution and is replaced in the background. The pool follows the agent's current
revision: a new revision evicts the old sandboxes, deletion (or warmPoolSize 0) evicts
them all, and ``warmPoolIdleTTL`` without an invocation lets the pool go cold until the
next one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from lightkube import AsyncClient

from clrk.api.agents import AgentTemplate, EgressRef, TaskAgent
from clrk.api.meta import parse_duration
from clrk.api.revision import AgentSandboxRevision
from clrk.client import follow, get_or_none, resource_class
from clrk.controllers import revisions
from clrk.worker.agents.task import (
    Networking,
    Prepared,
    PrepareError,
    Trace,
    discard,
    prepare,
)
from clrk.worker.images.store import ImageStore
from clrk.worker.sandbox.runner import Runtime

log = logging.getLogger("clrk.worker.warm")
RETRY_SECONDS = 5.0


@dataclass
class _Entry:
    revision: str
    template: AgentTemplate
    size: int
    idle_ttl: float | None
    metadata_mode: bool
    digest: str | None
    egress_refs: list[EgressRef] | None
    ready: list[Prepared] = field(default_factory=list)
    filling: asyncio.Task[None] | None = None
    last_used: float = field(default_factory=time.monotonic)
    cold: bool = False


class WarmPool:
    def __init__(self, client: AsyncClient, runtime: Runtime, images: ImageStore,
                 networking: Networking | None, namespace: str, pool: str) -> None:
        self.client = client
        self.runtime = runtime
        self.images = images
        self.networking = networking
        self.namespace = namespace
        self.pool = pool
        self.entries: dict[tuple[str, str], _Entry] = {}
        self.hits = 0
        self.misses = 0
        # Fills and evictions are never cancelled (a half-made sandbox would leak); a
        # fill that finishes for an entry no longer current evicts what it made.
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = asyncio.Event()

    # ---- what the worker asks --------------------------------------------------------

    def take(self, namespace: str, name: str, revision: str | None) -> Prepared | None:
        entry = self.entries.get((namespace, name))
        if entry is None:
            return None
        entry.last_used = time.monotonic()
        entry.cold = False
        found: Prepared | None = None
        if revision == entry.revision:
            port = self.networking.egress_port(namespace, entry.template, entry.egress_refs) \
                if self.networking else None
            while entry.ready and found is None:
                candidate = entry.ready.pop(0)
                current = candidate.net is None or candidate.net.egress_port == port
                if candidate.sandbox.alive and current:
                    found = candidate
                else:  # died while waiting, or made before its gateway changed: replaced
                    self._evict([candidate])
        if found is None:
            self.misses += 1
            self._fill(namespace, name, entry)
        else:
            self.hits += 1
            found.warm = True
            log.info("warm hit for %s/%s (%s)", namespace, name, revision)
        return found

    def refill(self, namespace: str, name: str) -> None:
        """After an execution: booting a replacement while it ran would take CPU from it."""
        entry = self.entries.get((namespace, name))
        if entry is not None:
            self._fill(namespace, name, entry)

    def warm_revisions(self) -> list[str]:
        return sorted({e.revision for e in self.entries.values() if e.ready})

    def status(self) -> dict[str, Any]:
        return {"warmHits": self.hits, "warmMisses": self.misses,
                "warmSandboxes": sum(len(e.ready) for e in self.entries.values())}

    # ---- following the agents ----------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        watcher = asyncio.create_task(self._watch())
        idle = asyncio.create_task(self._idle_loop())
        await stop.wait()
        for task in (watcher, idle):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._closed.set()
        for key in list(self.entries):
            self._drop(key)
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def _watch(self) -> None:
        await follow(self.client, resource_class(TaskAgent), self.namespace, self._sync, log,
                     "warm pool")

    async def _sync(self, op: str, obj: dict[str, Any]) -> None:
        md = obj["metadata"]
        key = (md["namespace"], md["name"])
        agent = TaskAgent.model_validate(obj)
        wanted = (op != "DELETED" and not md.get("deletionTimestamp")
                  and agent.spec.worker_pool_ref == self.pool and agent.spec.warm_pool_size > 0)
        name = revisions.wanted(obj)
        if not wanted or name is None:
            self._drop(key)
            return
        rev = await get_or_none(self.client, resource_class(AgentSandboxRevision), name,
                                md["namespace"])
        try:
            wire, revision, digest = revisions.serving(obj, rev)
        except revisions.PinnedRevisionMissing:
            self._drop(key)
            return
        if revision is None:
            return  # the controller has not cut the current template's revision yet
        template = AgentTemplate.model_validate(wire)
        ttl = (parse_duration(agent.spec.warm_pool_idle_ttl).total_seconds()
               if agent.spec.warm_pool_idle_ttl else None)
        entry = self.entries.get(key)
        if entry is not None and entry.revision != revision:
            log.info("evicting the warm sandboxes of %s/%s: revision %s replaces %s",
                     *key, revision, entry.revision)
            self._drop(key)
            entry = None
        if entry is None:
            entry = _Entry(revision, template, agent.spec.warm_pool_size, ttl,
                           agent.spec.delivery.mode == "Metadata",
                           digest, agent.spec.egress_refs)
            self.entries[key] = entry
        else:
            entry.size, entry.idle_ttl = agent.spec.warm_pool_size, ttl
            surplus = entry.ready[entry.size:]
            del entry.ready[entry.size:]
            self._evict(surplus)
        self._fill(*key, entry)

    def _drop(self, key: tuple[str, str]) -> None:
        entry = self.entries.pop(key, None)
        if entry is None:
            return
        self._evict(entry.ready)
        entry.ready = []

    def _spawn(self, coro: Any) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _evict(self, sandboxes: list[Prepared]) -> None:
        for prepared in sandboxes:
            self._spawn(discard(prepared, self.networking))

    def _fill(self, namespace: str, name: str, entry: _Entry) -> None:
        if entry.filling is not None and not entry.filling.done():
            return
        entry.filling = self._spawn(self._fill_loop(namespace, name, entry))

    async def _fill_loop(self, namespace: str, name: str, entry: _Entry) -> None:
        while not entry.cold and not self._closed.is_set() and len(entry.ready) < entry.size \
                and self.entries.get((namespace, name)) is entry:
            try:
                port = self.networking.egress_port(namespace, entry.template,
                                                   entry.egress_refs) \
                    if self.networking else None
                # Its invocation is not known yet: the sandbox's trace is its own, and
                # the invocation it serves adopts it (protocol.trace_frame).
                prepared = await prepare(self.runtime, self.images, entry.template,
                                         entry.metadata_mode, self.networking, entry.digest,
                                         port, Trace.new())
            except (PrepareError, Exception) as err:
                log.warning("cannot warm a sandbox for %s/%s: %s", namespace, name, err)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._closed.wait(), RETRY_SECONDS)
                continue
            if self.entries.get((namespace, name)) is not entry or entry.cold \
                    or self._closed.is_set():
                self._evict([prepared])
                return
            entry.ready.append(prepared)

    async def _idle_loop(self) -> None:
        while True:
            await asyncio.sleep(1)
            now = time.monotonic()
            for (ns, name), entry in list(self.entries.items()):
                if entry.idle_ttl and entry.ready and now - entry.last_used > entry.idle_ttl:
                    log.info("warm pool of %s/%s idle for %gs: going cold", ns, name,
                             entry.idle_ttl)
                    entry.cold = True
                    self._evict(entry.ready)
                    entry.ready = []
