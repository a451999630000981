"""DaemonAgents on a worker: run the ones assigned here, keep each per its restart policy.

The controller assigns a DaemonAgent to one worker (status.worker); that worker runs
it and reports phase, upSince, restartCount and the last exit. A template change
restarts it on the new revision; deletion or reassignment stops it (SIGTERM, then
SIGKILL after 5 s).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from lightkube import AsyncClient
from lightkube.types import PatchType

from clrk.api.agents import AgentTemplate, DaemonAgent
from clrk.api.revision import AgentSandboxRevision
from clrk.client import follow, get_or_none, resource_class
from clrk.controllers import revisions
from clrk.egress.attribution import Attribution
from clrk.worker.agents.supervision import History, decide
from clrk.worker.agents.task import Networking, PrepareError, Trace, release, resolve, start
from clrk.worker.images.store import ImageStore
from clrk.worker.sandbox.runner import Result, Runtime
from clrk.worker.telemetry import TelemetryReporter

log = logging.getLogger("clrk.worker.daemon")


REVISION_WAIT = 30.0  # seconds a run waits for the revision of a new template


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class _Running:
    template_key: str
    stop: asyncio.Event
    task: asyncio.Task[None]


class DaemonSupervisor:
    def __init__(self, client: AsyncClient, runtime: Runtime, images: ImageStore,
                 worker: str, namespace: str, telemetry: TelemetryReporter | None = None,
                 networking: Networking | None = None) -> None:
        self.client = client
        self.namespace = namespace
        self.telemetry = telemetry
        self.networking = networking
        self.runtime = runtime
        self.images = images
        self.worker = worker
        self.res = resource_class(DaemonAgent)
        self.running: dict[tuple[str, str], _Running] = {}
        self._stopping: set[asyncio.Task[None]] = set()

    async def _status(self, ns: str, name: str, **fields: Any) -> None:
        try:
            await self.client.patch(self.res.Status, name, {"status": fields}, namespace=ns,
                                    patch_type=PatchType.MERGE)
        except Exception as err:  # the agent may be gone; the API may refuse: say so
            log.warning("could not report DaemonAgent %s/%s's status: %s", ns, name, err)

    async def run(self, stop: asyncio.Event) -> None:
        watcher = asyncio.create_task(self._watch())
        await stop.wait()
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
        running = list(self.running.values())
        self.running.clear()
        await asyncio.gather(*(self._halt(r) for r in running), *self._stopping)

    async def _watch(self) -> None:
        await follow(self.client, self.res, self.namespace, self._sync, log, "daemon")

    def _sync(self, op: str, obj: dict[str, Any]) -> None:
        md = obj["metadata"]
        key = (md["namespace"], md["name"])
        mine = (obj.get("status") or {}).get("worker") == self.worker
        gone = op == "DELETED" or md.get("deletionTimestamp")
        template = obj["spec"]["template"]
        template_key = json.dumps(template, sort_keys=True) + json.dumps(
            {k: obj["spec"].get(k) for k in ("restartPolicy", "maxRestarts",
                                             "maxLifetimeSeconds", "pinnedRevisionName")},
            sort_keys=True)
        current = self.running.get(key)
        if current and (gone or not mine or current.template_key != template_key):
            del self.running[key]
            task = asyncio.create_task(self._halt(current))
            self._stopping.add(task)
            task.add_done_callback(self._stopping.discard)
            current = None
        if not current and mine and not gone:
            agent = DaemonAgent.model_validate(obj)
            stop = asyncio.Event()
            task = asyncio.create_task(self._supervise(agent, stop))
            self.running[key] = _Running(template_key, stop, task)

    @staticmethod
    async def _halt(current: _Running) -> None:
        current.stop.set()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await current.task

    async def _serving(self, agent: DaemonAgent, stop: asyncio.Event
                       ) -> tuple[AgentTemplate, str | None]:
        """The template to run and its revision: the pinned revision's; else the agent's
        template, with the revision the controller cuts for it (waited for a while: a
        template change reaches the worker before its revision does, and a run must not
        be recorded under the previous one)."""
        ns, name = agent.metadata["namespace"], agent.metadata["name"]
        wire = agent.to_wire()
        deadline = time.monotonic() + REVISION_WAIT
        while True:
            wanted = revisions.wanted(wire)
            rev = await get_or_none(self.client, resource_class(AgentSandboxRevision),
                                    wanted, ns) if wanted else None
            template, revision, _ = revisions.serving(wire, rev)
            if revision is not None or agent.spec.pinned_revision_name or \
                    time.monotonic() > deadline or stop.is_set():
                return AgentTemplate.model_validate(template), revision
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.5)
            fresh = await get_or_none(self.client, self.res, name, ns)
            if fresh is not None:  # its status names the revisions the controller cut
                wire = {**wire, "status": fresh.get("status") or {}}

    async def _supervise(self, agent: DaemonAgent, stop: asyncio.Event) -> None:
        ns, name = agent.metadata["namespace"], agent.metadata["name"]
        spec = agent.spec
        history = History()
        lifetime = float(spec.max_lifetime_seconds) or None
        try:
            template, revision = await self._serving(agent, stop)
        except revisions.PinnedRevisionMissing as err:
            await self._status(ns, name, phase="Failed", message=str(err))
            return
        try:
            run = await resolve(self.images, template)
        except PrepareError as err:
            await self._status(ns, name, phase="Failed", message=str(err))
            return
        tel = self.telemetry
        while not stop.is_set():
            started = time.monotonic()
            await self._status(ns, name, phase="Running", upSince=_now(),
                               restartCount=history.restarts, message="")
            run_id = await tel.begin(ns, name, revision) if tel else None
            inv = run_id["invocation"] if run_id else None

            def out(stream: str, inv: str | None = inv) -> Callable[[bytes], None]:
                if tel is None:
                    return lambda b: log.info("%s/%s %s: %s", ns, name, stream,
                                              b.decode(errors="replace"))
                return lambda b: tel.output(ns, name, inv, stream, b)

            failure = ""
            try:
                port = self.networking.egress_port(ns, template, spec.egress_refs) \
                    if self.networking else None
                who = Attribution(ns, "DaemonAgent", name, run_id["invocation"],
                                  run_id["traceId"], run_id["spanId"]) if run_id else None
                # TRACEPARENT: the run's Invocation span (none when the API was away).
                sandbox = await start(self.runtime, run, False, self.networking, daemon=True,
                                      egress_port=port, attribution=who,
                                      trace=Trace.of(run_id))
            except Exception as err:  # e.g. the address pool is exhausted: retry later
                log.warning("cannot start %s/%s: %s", ns, name, err)
                sandbox, failure = None, f"SandboxFailed: {err}"
            if sandbox is None:
                result = Result(1, False, b"", failure)
            else:
                try:
                    result = await sandbox.sandbox.finish(b"", lifetime, out("stdout"),
                                                          out("stderr"), stop)
                finally:
                    await release(sandbox, self.networking)
            recycled = result.timed_out and bool(lifetime)
            if tel is not None:
                phase = "Succeeded" if result.exit_code == 0 or stop.is_set() or recycled \
                    else "Failed"
                reason = ("Stopped: the agent was changed, deleted or moved" if stop.is_set()
                          else "Recycled: maxLifetimeSeconds reached" if recycled
                          else result.reason or (f"the agent exited with code "
                                                 f"{result.exit_code}"
                                                 if result.exit_code else ""))
                await tel.end(ns, name, inv, phase, result.exit_code, reason)
            if stop.is_set():
                await self._status(ns, name, phase="Stopped", lastExitCode=result.exit_code)
                return
            decision = decide(spec.restart_policy, spec.max_restarts, result.exit_code,
                              time.monotonic() - started, recycled, history)
            await self._status(ns, name, phase=decision.phase, restartCount=history.restarts,
                               lastExitCode=result.exit_code, message=decision.reason)
            if not decision.restart:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), decision.delay or 0.001)
