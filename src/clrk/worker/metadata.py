"""The sandbox metadata service (`CLRK_METADATA_URL`, ends in /v1).

It knows a sandbox by its source address: `GET /v1/event` returns that execution's
envelope, `POST /v1/response` records its reply (204 the first time, 409 after), and
`POST /v1/traces` and `/v1/logs` take the agent's own OTLP exports (the same address
is its `OTEL_EXPORTER_OTLP_ENDPOINT`; see `clrk.worker.otlp`). Requests from addresses
that are not a running sandbox get 403. A warm sandbox is reserved before its event
exists: its `GET /v1/event` waits until an invocation delivers one.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from typing import Any, Literal

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from clrk.egress.attribution import Attribution
from clrk.worker import otlp

MAX_RESPONSE = 32 * 1024 * 1024
ATTRIBUTION_WAIT = 10.0  # seconds an export of a warm sandbox waits for its invocation
# How the sandbox gets its input: an event to GET (delivery mode Metadata), stdin, or
# none at all (a DaemonAgent).
SlotKind = Literal["event", "stdin", "daemon"]
NO_EVENT = {"stdin": "this sandbox's event came on stdin (delivery mode Stdin)",
            "daemon": "a DaemonAgent has no event"}


@dataclass
class Slot:
    event: dict[str, Any] | None = None
    response: bytes | None = None
    content_type: str = ""
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    kind: SlotKind = "event"
    # Whose OTLP exports the sandbox's are: known when its execution is (a warm
    # sandbox's when an invocation takes it).
    who: Attribution | None = None
    exporting: int = 0  # OTLP requests of this sandbox being forwarded
    attributed: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def daemon(self) -> bool:
        return self.kind == "daemon"

    def attribute(self, who: Attribution) -> None:
        self.who = who
        self.attributed.set()

    def deliver(self, event: dict[str, Any]) -> None:
        self.event = event
        self.ready.set()


class MetadataService:
    def __init__(self, exports: otlp.Sink | None = None) -> None:
        self._slots: dict[str, Slot] = {}
        self.exports = exports  # where the agents' own OTLP exports go

    def reserve(self, *addresses: str, kind: SlotKind = "event",
                who: Attribution | None = None) -> Slot:
        """A slot for the sandbox with these source addresses (IPv4 and IPv6)."""
        slot = Slot(kind=kind, who=who)
        for address in addresses:
            self._slots[address] = slot
        return slot

    def register_daemon(self, *addresses: str, who: Attribution | None = None) -> Slot:
        return self.reserve(*addresses, kind="daemon", who=who)

    def unregister(self, *addresses: str) -> None:
        for address in addresses:
            slot = self._slots.pop(address, None)
            if slot is not None:
                slot.ready.set()  # a waiting GET ends (410: the sandbox is going away)
                slot.attributed.set()

    def _slot(self, request: Request) -> Slot | None:
        host = request.client.host if request.client else ""
        # One dual-stack socket serves both families; IPv4 peers arrive v4-mapped.
        return self._slots.get(host.removeprefix("::ffff:"))

    async def event(self, request: Request) -> Response:
        slot = self._slot(request)
        if slot is None:
            return JSONResponse({"message": "not a sandbox of this worker"}, 403)
        if slot.kind != "event":
            return JSONResponse({"message": NO_EVENT[slot.kind]}, 404)
        await slot.ready.wait()
        if slot.event is None:
            return JSONResponse({"message": "this sandbox is being removed"}, 410)
        return JSONResponse(slot.event)

    async def response(self, request: Request) -> Response:
        slot = self._slot(request)
        if slot is None:
            return JSONResponse({"message": "not a sandbox of this worker"}, 403)
        if slot.daemon:
            return JSONResponse({"message": "a DaemonAgent has no response to post"}, 404)
        if slot.kind == "stdin":
            return JSONResponse({"message": "this sandbox answers on stdout (delivery "
                                 "mode Stdin)"}, 404)
        if slot.response is not None:
            return JSONResponse({"message": "a response was already posted"}, 409)
        body = await request.body()
        if len(body) > MAX_RESPONSE:
            return JSONResponse({"message": "response too large"}, 413)
        slot.response = body
        slot.content_type = request.headers.get("content-type", "")
        return Response(status_code=204)

    async def traces(self, request: Request) -> Response:
        return await self._export(request, "traces")

    async def logs(self, request: Request) -> Response:
        return await self._export(request, "logs")

    async def _export(self, request: Request, signal: otlp.Signal) -> Response:
        slot = self._slot(request)
        if slot is None:
            return JSONResponse({"message": "not a sandbox of this worker"}, 403)
        if slot.who is None:
            # A warm sandbox's SDK may export before an invocation takes the sandbox:
            # the export waits for it a while rather than being refused.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(slot.attributed.wait(), ATTRIBUTION_WAIT)
        if slot.who is None or self.exports is None:
            return await otlp.receive(request, signal, None, self.exports)
        slot.exporting += 1
        try:
            return await otlp.receive(request, signal, slot.who, self.exports,
                                      busy=slot.exporting > otlp.MAX_IN_FLIGHT)
        finally:
            slot.exporting -= 1

    def app(self) -> Starlette:
        return Starlette(routes=[
            Route("/v1/event", self.event, methods=["GET"]),
            Route("/v1/response", self.response, methods=["POST"]),
            Route("/v1/traces", self.traces, methods=["POST"]),
            Route("/v1/logs", self.logs, methods=["POST"]),
        ])
