"""`clrk worker`: one node's worker process (HTTP dispatch service + heartbeats)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from pathlib import Path
from typing import Any

import httpx
from lightkube import AsyncClient
from lightkube.config.kubeconfig import SingleConfig

from clrk import kubeconfig
from clrk.api.core import Secret
from clrk.api.workerpool import WorkerPool
from clrk.client import get_or_none, resource_class
from clrk.serving import Server, url_host
from clrk.worker.agents.daemon import DaemonSupervisor
from clrk.worker.agents.task import Networking
from clrk.worker.agents.warm import WarmPool
from clrk.worker.dns import DNSResponder
from clrk.worker.egress import EgressPlane, port_range, udp_relay_port
from clrk.worker.images import pull_secrets
from clrk.worker.images.collection import DiskMarks, keep_within
from clrk.worker.images.pull_secrets import PullSecretError
from clrk.worker.images.registry import RegistryClient
from clrk.worker.images.store import ImageStore
from clrk.worker.metadata import MetadataService
from clrk.worker.prepull import Prepuller
from clrk.worker.sandbox.network import Network
from clrk.worker.sandbox.runner import Runtime
from clrk.worker.server import Worker
from clrk.worker.telemetry import TelemetryReporter
from clrk.worker.udp import UDPRelay

log = logging.getLogger("clrk.worker")
HEARTBEAT_SECONDS = 2.0


async def _heartbeats(worker: Worker, url: str, config: SingleConfig, namespace: str,
                      pool: str, stop: asyncio.Event) -> None:
    endpoint = (f"{config.cluster.server.rstrip('/')}/apis/clrk.apoxy.dev/v1alpha1/"
                f"namespaces/{namespace}/workerpools/{pool}/heartbeat")
    async with kubeconfig.http_client(config, 5) as client:
        while True:
            try:
                r = await client.post(endpoint, json={**worker.status(), "url": url})
                if r.status_code != 200:
                    log.warning("heartbeat refused: %s %s", r.status_code, r.text[:200])
            except httpx.HTTPError as err:
                log.warning("heartbeat failed: %s", err)
            if stop.is_set():
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), HEARTBEAT_SECONDS)


async def _pull_credentials(client: AsyncClient, namespace: str, pool_doc: dict[str, Any],
                            warned: set[str]) -> dict[str, tuple[str, str]]:
    creds: dict[str, tuple[str, str]] = {}
    refs = (pool_doc["spec"].get("template") or {}).get("imagePullSecrets") or []
    for ref in refs:
        secret = await get_or_none(client, resource_class(Secret), ref["name"], namespace)
        try:
            if secret is None:
                raise PullSecretError(f"imagePullSecrets: Secret {namespace}/{ref['name']} "
                                      "does not exist")
            creds.update(pull_secrets.credentials(secret))
        except PullSecretError as err:
            if str(err) not in warned:
                warned.add(str(err))
                log.warning("%s", err)
    return creds


async def _follow_pool(client: AsyncClient, worker: Worker, namespace: str, pool: str,
                       fixed: bool, stop: asyncio.Event) -> None:
    """Keep the worker's capacity at its pool's maxExecutionsPerWorker (unless fixed) and
    its registry credentials at the pool's imagePullSecrets."""
    res = resource_class(WorkerPool)
    warned: set[str] = set()
    while not stop.is_set():
        pool_doc = None
        with contextlib.suppress(Exception):  # the API may be briefly away
            pool_doc = await get_or_none(client, res, pool, namespace)
        if pool_doc is not None:
            if not fixed:
                worker.capacity = int(pool_doc["spec"].get("maxExecutionsPerWorker") or 32)
            with contextlib.suppress(Exception):
                worker.images.registry.credentials = await _pull_credentials(
                    client, namespace, pool_doc, warned)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), HEARTBEAT_SECONDS)


async def serve(name: str, data_dir: Path, kube: Path | None, namespace: str, pool: str,
                host: str, port: int, capacity: int | None, insecure: set[str],
                index: int = 0, networked: bool = True,
                dns_upstream: tuple[str, int] | None = None,
                disk: DiskMarks | None = None) -> None:
    runtime = Runtime(data_dir / "sandboxes")
    left = await runtime.sweep()
    if left:
        log.info("removed %d sandbox(es) left by a previous worker", len(left))
    images = ImageStore(data_dir / "images", RegistryClient(insecure=insecure))
    images.clean_partial()
    networking: Networking | None = None
    metadata_server: Server | None = None
    dns: DNSResponder | None = None
    udp: UDPRelay | None = None
    config = kubeconfig.api_config(kube)  # without a file: the pod's ServiceAccount
    telemetry = TelemetryReporter(config, name)
    if networked:
        metadata = MetadataService(telemetry)
        metadata_server = Server(metadata.app(), "::", 0)  # dual-stack: v4 and v6 URLs
        async def verdict(sandbox: str, qname: str) -> str | bool:
            return await networking.dns_verdict(sandbox, qname) if networking else False

        def lookup(sandbox: str, qname: str, outcome: str, answers: list[str]) -> None:
            if networking is not None and networking.egress is not None:
                networking.egress.lookup(sandbox, qname, outcome, answers)

        dns = DNSResponder(verdict, dns_upstream, lookup)
        await dns.start()

        def udp_verdict(sandbox: str, address: str, port: int
                        ) -> tuple[tuple[str, int] | None, str, str]:
            if networking is None:
                return None, "", "the worker is starting"
            return networking.udp_verdict(sandbox, address, port)

        def udp_record(item: dict[str, Any]) -> None:
            if networking is not None:
                networking.udp_record(item)

        udp = UDPRelay(udp_verdict, udp_record)
        await udp.start(udp_relay_port(index))
        network = Network(index, metadata_server.port, egress_ports=port_range(index),
                          dns_port=dns.port, udp_port=udp.port,
                          spare_file=runtime.state_dir / "spare-networks")
        gone = await network.sweep()
        if gone:
            log.info("removed %d network namespace(s) left by a previous worker", len(gone))
        await network.install()
        await metadata_server.start()
    client = AsyncClient(config=config, field_manager=f"worker-{name}")
    egress: EgressPlane | None = None
    if networked:
        egress = EgressPlane(client, data_dir, namespace, index, name)
        networking = Networking(network, metadata, egress, dns)
    warm = WarmPool(client, runtime, images, networking, namespace, pool)
    worker = Worker(name, runtime, images, capacity or 32, networking, warm)
    server = Server(worker.app(), host, port, grace=30)
    url = f"http://{url_host(host)}:{server.port}"
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await server.start()
    beats = asyncio.create_task(_heartbeats(worker, url, config, namespace, pool, stop))
    warming = asyncio.create_task(warm.run(stop))
    egress_stop = asyncio.Event()  # set once the running executions are drained
    egressing = asyncio.create_task(egress.run(egress_stop)) if egress is not None else None
    if egress is not None and networking is not None:
        egress.attach(networking.attribution, telemetry)
    # A pool serves the agents of its own namespace: the worker watches only there (its
    # ServiceAccount is bound there and nowhere else).
    daemons = asyncio.create_task(DaemonSupervisor(client, runtime, images, name, namespace,
                                                   telemetry, networking).run(stop))
    prepull = asyncio.create_task(Prepuller(client, images, namespace).run(stop))
    collecting = asyncio.create_task(keep_within(images, runtime.roots_in_use,
                                                 disk or DiskMarks(), stop))
    follow = asyncio.create_task(_follow_pool(client, worker, namespace, pool,
                                              capacity is not None, stop))
    log.info("worker %s serving on %s for pool %s/%s", name, url, namespace, pool)
    await stop.wait()
    # Drain: refuse new work (and say so in a last heartbeat), finish what runs (its
    # egress and telemetry still up), then take everything down.
    worker.draining = True
    log.info("draining: %d execution(s) running; no new ones are taken", worker.in_flight)
    await beats
    await daemons
    await warming
    await prepull
    await collecting
    await follow
    await worker.drain()
    log.info("drained: every execution has ended")
    egress_stop.set()
    if egressing is not None:
        await egressing
    await telemetry.close()
    await client.close()
    await server.stop()
    await runtime.drain()
    if networking is not None and metadata_server is not None:
        await metadata_server.stop()
        await networking.network.drain()
        await networking.network.uninstall()
    if dns is not None:
        dns.stop()
    if udp is not None:
        udp.stop()
