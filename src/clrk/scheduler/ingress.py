"""The HTTP ingress of `clrk dev`: any request with `X-Clrk-TaskAgent: ns/name` invokes
that agent, exactly like the product's curl example."""

from __future__ import annotations

import json

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from clrk.apiserver.app import read_body
from clrk.apiserver.errors import APIError
from clrk.scheduler.invoke import Invoker
from clrk.serving import Server, url_host
from clrk.worker.agents.envelope import MAX_BODY


def _error(err: APIError) -> Response:
    return Response(json.dumps(err.status()), err.code, media_type="application/json",
                    headers=err.headers or None)


class Ingress:
    def __init__(self, invoker: Invoker, host: str = "127.0.0.1", port: int = 0) -> None:
        self.invoker = invoker
        methods = ["GET", "POST", "PUT", "PATCH", "DELETE"]
        app = Starlette(routes=[Route("/{path:path}", self.handle, methods=methods)])
        self._server = Server(app, host, port)
        self.url = f"http://{url_host(host)}:{self._server.port}"

    async def handle(self, request: Request) -> Response:
        target = request.headers.get("x-clrk-taskagent", "")
        ns, _, name = target.partition("/")
        if not name:
            ns, name = "default", ns
        if not name:
            return _error(APIError(400, "set the X-Clrk-TaskAgent header to namespace/name"))
        try:
            body = await read_body(request, MAX_BODY)
        except APIError as err:
            self.invoker.refused(ns, name, dict(request.headers), err)
            return _error(err)
        try:
            reply = await self.invoker.invoke(ns, name, body, dict(request.headers))
        except APIError as err:
            return _error(err)
        if reply.stream is not None:
            return StreamingResponse(reply.stream, reply.status, headers=reply.headers,
                                     media_type=reply.media_type)
        return Response(reply.raw or b"", reply.status, headers=reply.headers,
                        media_type=reply.media_type)

    async def start(self) -> None:
        await self._server.start()

    async def stop(self) -> None:
        await self._server.stop()
