"""The running control plane: the API server (with scheduler and telemetry), the HTTP
ingress and the controller manager, started and stopped together.

``clrk dev`` runs it in its own process; the controller-manager Deployment of a cluster
runs the same assembly. The controllers reach the API server only through a Kubernetes
client and the kubeconfig written here, exactly as they reach a real kube-apiserver.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from pathlib import Path

from lightkube import AsyncClient, KubeConfig

from clrk.client import FIELD_MANAGER, http_invoker
from clrk.controllers.manager import ControllerManager
from clrk.controlplane.apiserver import APIServer
from clrk.kubeconfig import HOST_KUBECONFIG
from clrk.scheduler.ingress import Ingress


@dataclass
class ControlPlane:
    data_dir: Path
    host: str = "127.0.0.1"
    port: int = 0
    ingress_port: int = 0
    concurrency: int = 4
    server: APIServer = field(init=False)
    ingress: Ingress = field(init=False)
    client: AsyncClient = field(init=False)
    _stop: asyncio.Event = field(init=False, default_factory=asyncio.Event)
    _controllers: asyncio.Task[None] | None = field(init=False, default=None)

    @property
    def kubeconfig(self) -> Path:
        return self.data_dir / HOST_KUBECONFIG

    async def start(self) -> None:
        """Serve the API and the ingress, then start the controllers against the API."""
        self.server = APIServer(self.data_dir, self.host, self.port)
        await self.server.start()
        self.server.write_kubeconfig(self.kubeconfig)
        self.ingress = Ingress(self.server.invoker, self.host, self.ingress_port)
        await self.ingress.start()
        self.client = AsyncClient(config=KubeConfig.from_file(str(self.kubeconfig)),
                                  field_manager=FIELD_MANAGER)
        manager = ControllerManager(self.client, concurrency=self.concurrency,
                                    registry=self.server.registry,
                                    invoke=http_invoker(self.kubeconfig))
        self._controllers = asyncio.create_task(manager.run(self._stop))

    async def stop(self) -> None:
        """Controllers first (they write through the API), then the servers."""
        self._stop.set()
        if self._controllers is not None:
            with contextlib.suppress(Exception):
                await self._controllers
        await self.ingress.stop()
        await self.client.close()
        await self.server.stop()
