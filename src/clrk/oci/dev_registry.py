"""The OCI registry `clrk dev` runs beside its API server: Debian's `docker-registry`
on 127.0.0.1, its blobs under the data directory (images survive restarts), restarted if
it dies. Workers reach it over plain HTTP; nothing else can (it listens on loopback).

The port is part of every image reference pushed there (``127.0.0.1:5001/word-count``),
so it stays the same across restarts: the one chosen first (``--registry-port``, or 5001)
is remembered in the data directory.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import socket
from dataclasses import dataclass
from pathlib import Path

import httpx
import yaml

from clrk import children

log = logging.getLogger("clrk.dev.registry")
DEFAULT_PORT = 5001
ADDRESS_FILE = "registry.addr"  # host:port of the running registry, for `clrk image push`


class RegistryError(Exception):
    """The dev registry cannot start; the message says why and what to do."""


def remembered_port(data_dir: Path) -> int | None:
    try:
        return int((data_dir / "registry" / "port").read_text())
    except (OSError, ValueError):
        return None


def address(data_dir: Path) -> str | None:
    """host:port of the dev registry that last ran with this data directory."""
    with contextlib.suppress(OSError):
        return (data_dir / ADDRESS_FILE).read_text().strip() or None
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _port_taken(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


@dataclass
class DevRegistry:
    data_dir: Path
    port: int | None = None  # None: the remembered one, else DEFAULT_PORT; 0: any free one

    def __post_init__(self) -> None:
        self.root = self.data_dir / "registry"
        self.proc: asyncio.subprocess.Process | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self.restarts = 0

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _choose_port(self) -> int:
        if self.port is None:
            self.port = remembered_port(self.data_dir) or DEFAULT_PORT
        elif self.port == 0:
            self.port = remembered_port(self.data_dir) or _free_port()
        if _port_taken(self.port):
            raise RegistryError(
                f"the dev registry's port 127.0.0.1:{self.port} is in use: stop what holds "
                "it, or choose another with --registry-port (images pushed to the old port "
                "must be pushed again), or run without one (--no-registry)")
        return self.port

    def _config(self) -> Path:
        config = self.root / "config.yml"
        config.write_text(yaml.safe_dump({
            "version": 0.1, "log": {"level": "warn", "accesslog": {"disabled": True}},
            "storage": {"filesystem": {"rootdirectory": str(self.root / "data")},
                        "delete": {"enabled": True}},
            "http": {"addr": self.host}}))
        return config

    async def start(self) -> None:
        binary = shutil.which("docker-registry")
        if binary is None:
            raise RegistryError("docker-registry is not installed (apt-get install "
                                "docker-registry), or run without a registry: --no-registry")
        self.root.mkdir(parents=True, exist_ok=True)
        port = self._choose_port()
        (self.root / "port").write_text(str(port))
        await self._spawn(binary)
        await self._ready()
        (self.data_dir / ADDRESS_FILE).write_text(self.host)
        self._task = asyncio.create_task(self._supervise(binary))

    async def _spawn(self, binary: str) -> None:
        with (self.root / "registry.log").open("ab") as out:
            self.proc = await asyncio.create_subprocess_exec(
                binary, "serve", str(self._config()), stdin=asyncio.subprocess.DEVNULL,
                stdout=out, stderr=out, start_new_session=True)

    async def _ready(self, timeout: float = 20.0) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        async with httpx.AsyncClient(timeout=1) as client:
            while True:
                assert self.proc is not None
                if self.proc.returncode is not None:
                    raise RegistryError(f"the dev registry exited with {self.proc.returncode}; "
                                        f"see {self.root / 'registry.log'}")
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get(f"http://{self.host}/v2/")).status_code == 200:
                        return
                if loop.time() > deadline:
                    raise RegistryError(f"the dev registry did not answer within {timeout:g}s; "
                                        f"see {self.root / 'registry.log'}")
                await asyncio.sleep(0.05)

    async def _supervise(self, binary: str) -> None:
        delay = 0.5
        while not self._stopping:
            assert self.proc is not None
            code = await self.proc.wait()
            if self._stopping:
                return
            self.restarts += 1
            log.warning("the dev registry exited with %s; restarting it in %.1fs", code, delay)
            await asyncio.sleep(delay)
            await self._spawn(binary)
            delay = min(delay * 2, 30.0)

    async def stop(self) -> None:
        self._stopping = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await children.stop(self.proc)
        with contextlib.suppress(OSError):
            (self.data_dir / ADDRESS_FILE).unlink()
