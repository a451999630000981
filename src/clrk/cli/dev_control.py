"""How `clrk dev status|wait-ready|reload` talk to the running `clrk dev`: a Unix socket
in its data dir (mode 0600, so only its user), one JSON request line, one JSON answer.

Only the dev process knows its children and its in-process parts (their uptime,
whether the controllers run, which worker it restarted); a file it rewrote would be
stale the moment it died, a socket that does not answer is not.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

SOCKET = "dev.sock"
Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]


class NotRunning(Exception):
    """Nothing answers on the data dir's socket."""


class ControlServer:
    def __init__(self, data_dir: Path, handlers: dict[str, Handler]) -> None:
        self.path = data_dir / SOCKET
        self.handlers = handlers
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self.path.unlink(missing_ok=True)  # ours: the instance lock is held
        self._server = await asyncio.start_unix_server(self._serve, path=str(self.path))
        os.chmod(self.path, 0o600)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
        self.path.unlink(missing_ok=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await reader.readline()
            try:
                request = json.loads(line)
                handler = self.handlers[str(request.get("op"))]
            except (ValueError, KeyError, AttributeError):
                answer: dict[str, Any] = {"error": f"unknown request {line[:100]!r}"}
            else:
                try:
                    answer = await handler(request)
                except Exception as err:  # told to the caller, not a crash of clrk dev
                    answer = {"error": str(err)}
            writer.write(json.dumps(answer).encode() + b"\n")
            await writer.drain()
        finally:
            writer.close()


def call(data_dir: Path, request: dict[str, Any], timeout: float = 60) -> dict[str, Any]:
    """Ask the running `clrk dev`; NotRunning when none answers."""
    path = data_dir / SOCKET
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect(str(path))
        except OSError:
            raise NotRunning(f"clrk dev is not running with data dir {data_dir} "
                             f"(nothing answers on {path})") from None
        sock.sendall(json.dumps(request).encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    answer: dict[str, Any] = json.loads(data or b"{}")
    return answer
