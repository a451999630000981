"""The running control plane: the API server (with scheduler and telemetry), the HTTP
ingress and the controller manager, started and stopped together.

``clrk dev`` runs it in its own process; the controller-manager Deployment of a cluster
(``clrk controller-manager``) runs the same assembly with :class:`ClusterMode`: the API
server then serves clrk's group behind kube-aggregator with kube-apiserver's access
decisions, and the controllers talk to kube-apiserver with the pod's ServiceAccount,
leading only while they hold a Lease. The controllers reach the API server only through a
Kubernetes client, in both modes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from lightkube import AsyncClient, KubeConfig
from lightkube.config.kubeconfig import SingleConfig

from clrk import __version__
from clrk.api.workerpool import worker_image
from clrk.apiserver.access import Access
from clrk.client import FIELD_MANAGER, http_invoker
from clrk.controllers.leader import LeaderElection
from clrk.controllers.manager import ControllerManager
from clrk.controllers.worker_workloads import WorkloadSettings
from clrk.controlplane.apiserver import APIServer, Delegated
from clrk.controlplane.delegation import (
    DelegatedAuthenticator,
    DelegatedAuthorizer,
    read_authentication_config,
)
from clrk.kubeconfig import HOST_KUBECONFIG
from clrk.scheduler.ingress import Ingress

log = logging.getLogger("clrk.controlplane")


@dataclass(frozen=True)
class LeaseSettings:
    namespace: str
    name: str
    identity: str
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0


@dataclass(frozen=True)
class ClusterMode:
    """What a cluster's controller manager needs besides what ``clrk dev`` has."""

    kube: SingleConfig  # how to reach kube-apiserver (the ServiceAccount's token)
    tls_cert_dir: Path  # the serving certificate Secret, mounted
    lease: LeaseSettings | None = None  # None: lead at once (one replica, no election)
    worker_image: str = ""  # for pools without template.image (default: this version's)
    # A ClickHouse server's HTTP interface for telemetry (default: chDB in data_dir).
    clickhouse_url: str = ""


@dataclass
class ControlPlane:
    data_dir: Path
    host: str = "127.0.0.1"
    port: int = 0
    ingress_port: int = 0
    concurrency: int = 4
    cluster: ClusterMode | None = None
    server: APIServer = field(init=False)
    ingress: Ingress = field(init=False)
    client: AsyncClient = field(init=False)
    _stop: asyncio.Event = field(init=False, default_factory=asyncio.Event)
    _controllers: asyncio.Task[None] | None = field(init=False, default=None)
    _manager: ControllerManager | None = field(init=False, default=None)
    # Stops the controllers alone (`clrk dev reload controller-manager`) or with the rest.
    _controllers_stop: asyncio.Event = field(init=False, default_factory=asyncio.Event)
    controllers_started: float = field(init=False, default=0.0)  # time.time()
    lost_lease: asyncio.Event = field(init=False, default_factory=asyncio.Event)

    @property
    def kubeconfig(self) -> Path:
        return self.data_dir / HOST_KUBECONFIG

    async def start(self) -> None:
        """Serve the API and the ingress, then start the controllers against the API."""
        if self.cluster is None:
            self.server = APIServer(self.data_dir, self.host, self.port)
            await self.server.start()
            self.server.write_kubeconfig(self.kubeconfig)
            written = KubeConfig.from_file(str(self.kubeconfig)).get()
            assert written is not None  # we just wrote it, with its current context
            config = written
        else:
            config = self.cluster.kube
            self.client = AsyncClient(config=config, field_manager=FIELD_MANAGER)
            self.server = APIServer(self.data_dir, self.host, self.port,
                                    telemetry_dsn=self.cluster.clickhouse_url or None,
                                    delegated=await self._delegated(self.cluster))
            await self.server.start()
        self.ingress = Ingress(self.server.invoker, self.host, self.ingress_port)
        await self.ingress.start()
        if self.cluster is None:
            self.client = AsyncClient(config=config, field_manager=FIELD_MANAGER)
        workloads = None if self.cluster is None else WorkloadSettings(
            self.cluster.worker_image or worker_image(__version__))
        manager = ControllerManager(self.client, concurrency=self.concurrency,
                                    registry=self.server.registry,
                                    invoke=http_invoker(config), workloads=workloads)
        self._manager = manager
        self._start_controllers()

    def _start_controllers(self) -> None:
        assert self._manager is not None
        self._controllers_stop = asyncio.Event()
        self.controllers_started = time.time()
        self._controllers = asyncio.create_task(self._run_controllers(self._manager))

    @property
    def controllers_running(self) -> bool:
        return self._controllers is not None and not self._controllers.done()

    async def restart_controllers(self) -> None:
        """Stop the controllers and start them afresh (`clrk dev reload
        controller-manager`): their watches and queues are rebuilt from the API server,
        which keeps every object, so nothing is lost. Not with a Lease: there a new
        process campaigns instead."""
        if self.cluster is not None and self.cluster.lease is not None:
            raise RuntimeError("controllers that hold a Lease are restarted by restarting "
                               "their process")
        self._controllers_stop.set()
        if self._controllers is not None:
            with contextlib.suppress(Exception):
                await self._controllers
        log.info("controllers restarted")
        self._start_controllers()

    async def _delegated(self, cluster: ClusterMode) -> Delegated:
        auth = await read_authentication_config(self.client)
        access = Access(DelegatedAuthenticator(auth, self.client),
                        DelegatedAuthorizer(self.client))
        return Delegated(access, auth.ca_bundle_pem(), cluster.tls_cert_dir)

    async def _run_controllers(self, manager: ControllerManager) -> None:
        lease = self.cluster.lease if self.cluster is not None else None
        if lease is None:
            stop = asyncio.Event()
            waiter = asyncio.create_task(_first_of(self._stop, self._controllers_stop, stop))
            try:
                await manager.run(stop)
            finally:
                waiter.cancel()
            return
        election = LeaderElection(self.client, lease.namespace, lease.name, lease.identity,
                                  lease.lease_duration, lease.renew_deadline,
                                  lease.retry_period)

        async def lead(lost: asyncio.Event) -> None:
            stop = asyncio.Event()
            waiter = asyncio.create_task(_first_of(self._stop, lost, stop))
            try:
                await manager.run(stop)
            finally:
                waiter.cancel()
            if lost.is_set():
                self.lost_lease.set()  # the process exits: a new one campaigns afresh

        await election.run(lead, self._stop)

    async def stop(self) -> None:
        """Controllers first (they write through the API), then the servers."""
        self._stop.set()
        if self._controllers is not None:
            with contextlib.suppress(Exception):
                await self._controllers
        await self.ingress.stop()
        await self.client.close()
        await self.server.stop()


async def _first_of(a: asyncio.Event, b: asyncio.Event, out: asyncio.Event) -> None:
    """Set ``out`` once either ``a`` or ``b`` is set."""
    waits = [asyncio.create_task(a.wait()), asyncio.create_task(b.wait())]
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waits:
            w.cancel()
    out.set()
