"""Serving an ASGI app in-process on a socket we bind ourselves (so port 0 works and the
caller learns the port before anyone connects)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from typing import Any

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol


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


def header_value(text: str, limit: int = 512) -> str:
    """Free text (a reason, an error) as an HTTP header value: one line of printable
    ASCII without leading or trailing blanks, which h11 requires (it refuses to send
    anything else, and the client would get no response at all)."""
    flat = " ".join("".join(c if " " <= c <= "~" else " " for c in text).split())
    return flat[:limit].rstrip()


def url_host(host: str) -> str:
    """How clients on this machine reach ``host``."""
    if host in ("0.0.0.0", "::"):
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host


class _PeerCertificateApp:
    """Puts a connection's verified client certificate into each request's scope as the
    ASGI TLS extension (``scope["extensions"]["tls"]``); uvicorn does not."""

    def __init__(self, app: Any, der: bytes) -> None:
        self.app = app
        self.der = der

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            extensions = scope.setdefault("extensions", {})
            extensions["tls"] = {"client_cert_der": self.der}
        await self.app(scope, receive, send)


class NoDelayProtocol(H11Protocol):
    """h11 on a connection with TCP_NODELAY. uvicorn serving a socket it was handed
    leaves Nagle's algorithm on, and a response written as headers then body waited for
    the client's delayed ACK: every answer took 40 ms more (44 ms for ``/version``, 1 ms
    with this; measured in docs/benchmarks.md)."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().connection_made(transport)


class PeerCertificateProtocol(NoDelayProtocol):
    """h11 whose requests know the client certificate the handshake verified."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        ssl_object = transport.get_extra_info("ssl_object")
        der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
        if der:
            self.app = _PeerCertificateApp(self.config.loaded_app, der)


class Server:
    """uvicorn on a pre-bound socket: ``start`` returns once it accepts connections."""

    def __init__(self, app: Any, host: str, port: int, grace: int = 2,
                 client_ca: str | None = None, **options: Any) -> None:
        """``client_ca``: a PEM bundle; clients may then present a certificate it signed
        (verified in the handshake, handed to the app per request)."""
        options.setdefault("http", NoDelayProtocol)
        if client_ca is not None:
            options.update(ssl_ca_certs=client_ca, ssl_cert_reqs=ssl.CERT_OPTIONAL,
                           http=PeerCertificateProtocol)
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
