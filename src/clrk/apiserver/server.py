"""The API server process: TLS, bearer token, uvicorn lifecycle."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from pathlib import Path

import uvicorn

from clrk import kubeconfig, pki
from clrk.apiserver.app import build_app
from clrk.apiserver.auth import load_or_create_token
from clrk.apiserver.handlers import API
from clrk.apiserver.storage import Store
from clrk.apiserver.watch import WatchHub
from clrk.scheduler import endpoints
from clrk.scheduler.invoke import Invoker
from clrk.scheduler.registry import WorkerRegistry

log = logging.getLogger("clrk.apiserver")


class APIServer:
    """The embedded Kubernetes-compatible API server, started and stopped in-process."""

    def __init__(self, data_dir: Path, host: str = "127.0.0.1", port: int = 0, *,
                 watch_history: int = 10_000, bookmark_interval: float = 30.0) -> None:
        self.data_dir = Path(data_dir)
        self.host = host
        self.port = port
        self.watch_history = watch_history
        self.bookmark_interval = bookmark_interval
        self.url = ""
        self.ca_pem = b""
        self.token = ""
        self._server: uvicorn.Server | None = None
        self._task: asyncio.Task[None] | None = None
        self._sock: socket.socket | None = None

    async def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        pki_dir = self.data_dir / "pki"
        ca = pki.load_or_create_ca(pki_dir, "clrk-apiserver-ca")
        hosts = ["localhost", "127.0.0.1", "::1"]
        if self.host not in hosts and self.host not in ("0.0.0.0", "::"):
            hosts.append(self.host)
        pki.load_or_create_serving(pki_dir, ca, hosts)
        self.ca_pem = ca.cert_pem
        self.token = load_or_create_token(self.data_dir / "token")
        self.store = Store(self.data_dir / "state.db", history=self.watch_history)
        self.hub = WatchHub()
        self.api = API(self.store, self.hub, self.bookmark_interval)
        self.registry = WorkerRegistry()
        self.invoker = Invoker(self.store, self.registry)
        endpoints.install(self.api, self.invoker, self.registry)
        for ns in ("default", "clrk"):
            self.api.ensure_namespace(ns)
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        sock.listen(128)
        sock.setblocking(False)
        self._sock = sock
        self.port = sock.getsockname()[1]
        shown = f"[{self.host}]" if ":" in self.host else self.host
        if self.host in ("0.0.0.0", "::"):
            shown = "127.0.0.1"
        self.url = f"https://{shown}:{self.port}"
        config = uvicorn.Config(
            build_app(self.api, self.token), log_level="warning", access_log=False,
            ssl_certfile=str(pki_dir / "serving.crt"), ssl_keyfile=str(pki_dir / "serving.key"),
            timeout_graceful_shutdown=2, lifespan="off", h11_max_incomplete_event_size=65536,
        )
        self._server = uvicorn.Server(config)
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]))
        while not self._server.started:
            if self._task.done():
                self._task.result()
            await asyncio.sleep(0.01)
        log.info("API server listening on %s", self.url)

    async def stop(self) -> None:
        if self._server is not None:
            self.hub.close_all()
            self._server.should_exit = True
            if self._task is not None:
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
        if self._sock is not None:
            self._sock.close()
        if getattr(self, "store", None) is not None:
            self.store.close()

    def write_kubeconfig(self, path: Path) -> None:
        kubeconfig.write(path, self.url, self.ca_pem, self.token)
