"""The HTTP ingress of `clrk dev`: any request with `X-Clrk-TaskAgent: ns/name` invokes
that agent, exactly like the product's curl example."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from clrk.apiserver.app import read_body
from clrk.apiserver.errors import APIError
from clrk.scheduler.invoke import Invoker
from clrk.worker.agents.envelope import MAX_BODY


def _error(err: APIError) -> Response:
    headers = {"Retry-After": "1"} if err.code == 429 else None
    return Response(json.dumps(err.status()), err.code, media_type="application/json",
                    headers=headers)


class Ingress:
    def __init__(self, invoker: Invoker, host: str = "127.0.0.1", port: int = 0) -> None:
        self.invoker = invoker
        self.host = host
        self.port = port
        self.url = ""
        self._server: uvicorn.Server | None = None
        self._task: asyncio.Task[None] | None = None

    async def handle(self, request: Request) -> Response:
        target = request.headers.get("x-clrk-taskagent", "")
        ns, _, name = target.partition("/")
        if not name:
            ns, name = "default", ns
        if not name:
            return _error(APIError(400, "set the X-Clrk-TaskAgent header to namespace/name"))
        try:
            body = await read_body(request, MAX_BODY)
            reply = await self.invoker.invoke(ns, name, body, dict(request.headers))
        except APIError as err:
            return _error(err)
        if reply.stream is not None:
            return StreamingResponse(reply.stream, reply.status, headers=reply.headers,
                                     media_type=reply.media_type)
        return Response(reply.raw or b"", reply.status, headers=reply.headers,
                        media_type=reply.media_type)

    async def start(self) -> None:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        sock.listen(128)
        sock.setblocking(False)
        self.port = sock.getsockname()[1]
        self.url = f"http://{self.host}:{self.port}"
        methods = ["GET", "POST", "PUT", "PATCH", "DELETE"]
        app = Starlette(routes=[Route("/{path:path}", self.handle, methods=methods)])
        config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off",
                                timeout_graceful_shutdown=2)
        self._server = uvicorn.Server(config)
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]))
        while not self._server.started:
            if self._task.done():
                self._task.result()
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        if self._server is not None and self._task is not None:
            self._server.should_exit = True
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
