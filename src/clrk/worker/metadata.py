"""The sandbox metadata service (`CLRK_METADATA_URL`, ends in /v1).

It knows a sandbox by its source address: `GET /v1/event` returns that execution's
envelope, `POST /v1/response` records its reply (204 the first time, 409 after).
Requests from addresses that are not a running sandbox get 403. A warm sandbox is
reserved before its event exists: its `GET /v1/event` waits until an invocation
delivers one.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

MAX_RESPONSE = 32 * 1024 * 1024


@dataclass
class Slot:
    event: dict[str, Any] | None = None
    response: bytes | None = None
    content_type: str = ""
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    daemon: bool = False  # a DaemonAgent's sandbox: it has no event

    def deliver(self, event: dict[str, Any]) -> None:
        self.event = event
        self.ready.set()


class MetadataService:
    def __init__(self) -> None:
        self._slots: dict[str, Slot] = {}

    def reserve(self, *addresses: str) -> Slot:
        """A slot for the sandbox with these source addresses (IPv4 and IPv6)."""
        slot = Slot()
        for address in addresses:
            self._slots[address] = slot
        return slot

    def register_daemon(self, *addresses: str) -> Slot:
        slot = Slot(daemon=True)
        for address in addresses:
            self._slots[address] = slot
        return slot

    def unregister(self, *addresses: str) -> None:
        for address in addresses:
            slot = self._slots.pop(address, None)
            if slot is not None:
                slot.ready.set()  # a waiting GET ends (410: the sandbox is going away)

    def _slot(self, request: Request) -> Slot | None:
        host = request.client.host if request.client else ""
        # One dual-stack socket serves both families; IPv4 peers arrive v4-mapped.
        return self._slots.get(host.removeprefix("::ffff:"))

    async def event(self, request: Request) -> Response:
        slot = self._slot(request)
        if slot is None:
            return JSONResponse({"message": "not a sandbox of this worker"}, 403)
        if slot.daemon:
            return JSONResponse({"message": "a DaemonAgent has no event"}, 404)
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
        if slot.response is not None:
            return JSONResponse({"message": "a response was already posted"}, 409)
        body = await request.body()
        if len(body) > MAX_RESPONSE:
            return JSONResponse({"message": "response too large"}, 413)
        slot.response = body
        slot.content_type = request.headers.get("content-type", "")
        return Response(status_code=204)

    def app(self) -> Starlette:
        return Starlette(routes=[
            Route("/v1/event", self.event, methods=["GET"]),
            Route("/v1/response", self.response, methods=["POST"]),
        ])
