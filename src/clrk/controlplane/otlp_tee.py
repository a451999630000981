"""`clrk dev`'s OTLP tee: the receiver on 127.0.0.1, and every otel_traces / otel_logs
batch the API server stores sent to it (and to ``--otlp-forward``) over OTLP/HTTP.

The tee goes through the real protocol, not a shortcut into the receiver: what the TUI
shows is exactly what any collector pointed at clrk would get. Sending never waits on
the store's caller (a bounded queue, batches, drops counted).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import Any

from clrk.serving import Server, url_host
from clrk.telemetry.client import TelemetryStore
from clrk.telemetry.otlp_export import OTLPExporter, Target
from clrk.telemetry.otlp_receive import OTLPReceiver


class OTLPTee:
    def __init__(self, host: str = "127.0.0.1", port: int = 0,
                 forward: str | None = None) -> None:
        self.receiver = OTLPReceiver()
        self._server = Server(self.receiver.app(), host, port)
        self.url = f"http://{url_host(host)}:{self._server.port}"
        self.forward = forward
        self.targets = [Target(self.url, (), "")]
        if forward:
            self.targets.append(Target(forward, (), ""))
        self.exporter = OTLPExporter()
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._store: TelemetryStore | None = None

    def _offer(self, table: str, rows: Sequence[Sequence[Any]]) -> None:
        spans, logs = (rows, ()) if table == "otel_traces" else ((), rows)
        for target in self.targets:
            self.exporter.offer(target, spans, logs)

    async def start(self, store: TelemetryStore) -> None:
        await self._server.start()
        self._task = asyncio.create_task(self.exporter.run(self._stop))
        self._store = store
        store.tee = self._offer

    async def stop(self) -> None:
        if self._store is not None:
            self._store.tee = None
        self._stop.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._server.stop()
