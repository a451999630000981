"""The worker's HTTP service: accepts dispatches, runs them, streams frames back.

Capacity is enforced here (429 when full) and draining refuses new work (503) while
executions already running finish.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from clrk.api.agents import AgentTemplate, TaskAgent
from clrk.worker.agents.task import Networking, discard, execute
from clrk.worker.agents.warm import WarmPool
from clrk.worker.images.store import ImageStore
from clrk.worker.protocol import (
    ALIVE_FRAME,
    ALIVE_SECONDS,
    STARTED_FRAME,
    output_frame,
    result_frame,
    trace_frame,
)
from clrk.worker.sandbox.runner import Runtime

log = logging.getLogger("clrk.worker")


@dataclass
class Worker:
    name: str
    runtime: Runtime
    images: ImageStore
    capacity: int = 32
    networking: Networking | None = None
    warm: WarmPool | None = None
    in_flight: int = 0
    draining: bool = False
    # The scheduler's proof on each dispatch: made here, told to the API server only in
    # the heartbeats (authenticated and authorized as workerpools/heartbeat), so nobody
    # else on the host or the pod network can hand this worker an execution.
    token: str = field(default_factory=lambda: secrets.token_urlsafe(32), repr=False)
    _idle: asyncio.Event = field(default_factory=asyncio.Event)

    def status(self) -> dict[str, object]:
        return {"name": self.name, "capacity": self.capacity, "inFlight": self.in_flight,
                "draining": self.draining, "cachedImages": self.images.cached(),
                "dispatchToken": self.token,
                "warmRevisions": self.warm.warm_revisions() if self.warm else [],
                **(self.warm.status() if self.warm else {})}

    async def drain(self) -> None:
        """Stop taking work and wait for what is running."""
        self.draining = True
        while self.in_flight:
            self._idle.clear()
            await self._idle.wait()

    def _authorized(self, request: Request) -> bool:
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(given.encode(),
                                                                  self.token.encode())

    async def dispatch(self, request: Request) -> Response:
        if not self._authorized(request):
            return JSONResponse({"message": "dispatch needs this worker's token (the "
                                 "scheduler has it from the heartbeats)"}, 401)
        if self.draining:
            return JSONResponse({"message": "worker is draining"}, 503)
        if self.in_flight >= self.capacity:
            return JSONResponse({"message": "worker is at capacity"}, 429,
                                headers={"Retry-After": "1"})
        try:
            doc = json.loads(await request.body())
            agent = TaskAgent.model_validate(doc["agent"])
            template = AgentTemplate.model_validate(doc["template"])
            event = doc["event"]
            revision = doc.get("revision")
            digest = doc.get("image_digest")
            invocation = doc.get("invocation")
        except (ValueError, KeyError, TypeError) as err:
            return JSONResponse({"message": f"bad dispatch: {err}"}, 400)
        self.in_flight += 1
        return StreamingResponse(self._run(agent, template, event, revision, digest,
                                           invocation),
                                 media_type="application/x-ndjson")

    async def _run(self, agent: TaskAgent, template: AgentTemplate,
                   event: dict[str, object], revision: str | None, digest: str | None,
                   invocation: dict[str, str] | None = None) -> AsyncIterator[bytes]:
        queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        md = agent.metadata
        warm = self.warm.take(md["namespace"], md["name"], revision) if self.warm else None
        if warm is not None and warm.trace is not None:  # its TRACEPARENT: adopted
            queue.put_nowait(trace_frame(warm.trace))

        async def work() -> None:
            try:
                outcome = await execute(
                    self.runtime, self.images, agent, template, event,
                    lambda b: queue.put_nowait(output_frame("stdout", b)),
                    lambda b: queue.put_nowait(output_frame("stderr", b)), self.networking,
                    lambda: queue.put_nowait(STARTED_FRAME), warm, digest, invocation)
                queue.put_nowait(result_frame(outcome))
            finally:
                queue.put_nowait(None)

        task = asyncio.create_task(work())
        try:
            while True:
                try:
                    frame = await asyncio.wait_for(queue.get(), ALIVE_SECONDS)
                except TimeoutError:  # quiet agent: the invoker hears the worker is here
                    yield ALIVE_FRAME
                    continue
                if frame is None:
                    break
                yield frame
        finally:
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            if warm is not None and not warm.sandbox.used:  # cancelled before it ran
                await discard(warm, self.networking)
            if self.warm is not None:
                self.warm.refill(md["namespace"], md["name"])
            self.in_flight -= 1
            self._idle.set()

    async def health(self, _request: Request) -> Response:
        return JSONResponse(self.status(), 503 if self.draining else 200)

    def app(self) -> Starlette:
        return Starlette(routes=[
            Route("/v1/executions", self.dispatch, methods=["POST"]),
            Route("/healthz", self.health, methods=["GET"]),
        ])
