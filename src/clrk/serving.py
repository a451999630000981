"""Serving an ASGI app in-process on a socket we bind ourselves (so port 0 works and the
caller learns the port before anyone connects)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from typing import Any

import uvicorn


def listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if host == "::":  # dual-stack whatever net.ipv6.bindv6only says
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    sock.bind((host, port))
    sock.listen(128)
    sock.setblocking(False)
    return sock


def url_host(host: str) -> str:
    """How clients on this machine reach ``host``."""
    if host in ("0.0.0.0", "::"):
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host


class Server:
    """uvicorn on a pre-bound socket: ``start`` returns once it accepts connections."""

    def __init__(self, app: Any, host: str, port: int, grace: int = 2,
                 **options: Any) -> None:
        self.sock = listen(host, port)
        self.host = host
        self.port: int = self.sock.getsockname()[1]
        config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off",
                                timeout_graceful_shutdown=grace, **options)
        self._server = uvicorn.Server(config)
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._server.serve(sockets=[self.sock]))
        while not self._server.started:
            if self._task.done():
                self._task.result()
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        self._server.should_exit = True
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self.sock.close()
