"""The OTLP/HTTP receiver of `clrk dev`: every signal clrk captures is teed to it, and
anything else that speaks OTLP may send to it too.

It keeps the latest records in a bounded window and hands them to whoever follows
``GET /v1/tail`` (the dev TUI), from a cursor, then live. It stores nothing: the
records are already in chDB; this is the live view of them, as a collector's debug
exporter is.
"""

from __future__ import annotations

import asyncio
import collections
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from clrk.telemetry.otlp_decode import OTLPError, Signal, decode, records
from clrk.telemetry.otlp_http import ExportRefused, media_of, read_export, refusal, success

WINDOW = 20_000
SUBSCRIBER_QUEUE = 10_000


class OTLPReceiver:
    """The window of recent records, numbered from 1, and the followers of it."""

    def __init__(self, window: int = WINDOW) -> None:
        self.window: collections.deque[tuple[int, dict[str, Any]]] = collections.deque(
            maxlen=window)
        self.seq = 0
        self.instance = uuid.uuid4().hex
        self.received = {"traces": 0, "logs": 0}
        self._followers: set[asyncio.Queue[tuple[int, dict[str, Any]]]] = set()

    def accept(self, items: list[dict[str, Any]]) -> None:
        for item in items:
            self.seq += 1
            entry = (self.seq, item)
            self.window.append(entry)
            for queue in list(self._followers):
                if queue.full():  # a follower that does not read loses its oldest
                    queue.get_nowait()
                queue.put_nowait(entry)

    async def follow(self, after: int) -> AsyncIterator[tuple[int, dict[str, Any]]]:
        """The records numbered past ``after`` still in the window, then each new one."""
        queue: asyncio.Queue[tuple[int, dict[str, Any]]] = asyncio.Queue(SUBSCRIBER_QUEUE)
        self._followers.add(queue)
        try:
            last = after
            for entry in list(self.window):
                if entry[0] > last:
                    last = entry[0]
                    yield entry
            while True:
                entry = await queue.get()
                if entry[0] > last:
                    last = entry[0]
                    yield entry
        finally:
            self._followers.discard(queue)

    async def _export(self, request: Request, signal: Signal) -> Response:
        try:
            media, body = await read_export(request, signal)
            message = decode(signal, body, media)
        except ExportRefused as err:
            return refusal(err.code, err.text, media_of(request))
        except OTLPError as err:
            return refusal(400, str(err), media_of(request))
        items = records(message)
        self.received[signal] += len(items)
        self.accept([dict(i) for i in items])
        return success(signal, media)

    async def traces(self, request: Request) -> Response:
        return await self._export(request, "traces")

    async def logs(self, request: Request) -> Response:
        return await self._export(request, "logs")

    async def tail(self, request: Request) -> Response:
        """NDJSON: first ``{"receiver": id}``, then ``{"seq": n, "record": {...}}`` per
        record past ``?after=n`` (taken only with ``?receiver=`` this receiver's id: a
        follower of a previous `clrk dev` starts again from the oldest kept)."""
        try:
            after = int(request.query_params.get("after", "0"))
        except ValueError:
            return Response("after: not an integer\n", 400)
        if request.query_params.get("receiver") != self.instance:
            after = 0

        async def lines() -> AsyncIterator[bytes]:
            yield json.dumps({"receiver": self.instance}).encode() + b"\n"
            async for seq, item in self.follow(after):
                yield json.dumps({"seq": seq, "record": item}).encode() + b"\n"

        return StreamingResponse(lines(), media_type="application/x-ndjson")

    def app(self) -> Starlette:
        return Starlette(routes=[
            Route("/v1/traces", self.traces, methods=["POST", "GET"]),
            Route("/v1/logs", self.logs, methods=["POST", "GET"]),
            Route("/v1/tail", self.tail, methods=["GET"])])
