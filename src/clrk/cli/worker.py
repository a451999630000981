"""`clrk worker`: run one worker (normally started for you by `clrk dev --workers N`)."""

from __future__ import annotations

import asyncio
import logging
import socket
import sys
from pathlib import Path
from typing import Annotated

import typer

from clrk.cli.errors import run_guarded


def worker(
    data_dir: Annotated[Path, typer.Option(
        "--data-dir", help="The worker's state: images, sandboxes, Envoy's files.")],
    kubeconfig: Annotated[Path | None, typer.Option(
        "--api-kubeconfig", help="Kubeconfig of the API server (default: the pod's "
        "ServiceAccount, for a worker pod of a cluster).")] = None,
    name: Annotated[str, typer.Option(
        "--name", help="The worker's name in its pool (default: the host name).")
    ] = socket.gethostname(),
    namespace: Annotated[str, typer.Option(
        "--pool-namespace", help="Namespace of the WorkerPool.")] = "default",
    pool: Annotated[str, typer.Option("--pool", help="The WorkerPool to serve.")
                    ] = "default",
    host: Annotated[str, typer.Option(
        "--host", help="Address of the dispatch service the scheduler calls.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(
        "--port", help="Port of the dispatch service (0 = any free port).")] = 0,
    capacity: Annotated[int | None, typer.Option(
        "--max-executions", min=1,
        help="Fixed capacity (default: the pool's maxExecutionsPerWorker).")] = None,
    insecure_registry: Annotated[list[str] | None, typer.Option(
        "--insecure-registry", help="host:port of a registry reached over plain HTTP.")
    ] = None,
    index: Annotated[int, typer.Option("--index", min=0, max=15,
                                       help="Distinct per worker on one host (addresses, "
                                            "interface names, firewall chain).")] = 0,
    network: Annotated[bool, typer.Option("--network/--no-network",
                                          help="Give sandboxes a network namespace.")] = True,
    dns_upstream: Annotated[str | None, typer.Option(
        "--dns-upstream", envvar="CLRK_DNS_UPSTREAM",
        help="host:port of the DNS server the sandboxes' responder asks (default: this "
             "host's resolver).")] = None,
    image_gc_high: Annotated[int, typer.Option(
        "--image-gc-high-threshold", min=1, max=100,
        help="Percent of the image store's disk in use above which the images unused "
             "longest are removed (as kubelet's imageGCHighThresholdPercent).")] = 85,
    image_gc_low: Annotated[int, typer.Option(
        "--image-gc-low-threshold", min=0, max=99,
        help="Percent of that disk in use at which removal stops.")] = 80,
) -> None:
    """Run sandboxes for a WorkerPool until SIGTERM, then drain."""
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    upstream = _host_port(dns_upstream) if dns_upstream else None
    # At use, as serve below: every other `clrk` command would load the worker.
    from clrk.worker.images.collection import DiskMarks
    try:
        disk = DiskMarks(high=image_gc_high, low=image_gc_low)
    except ValueError as err:
        raise typer.BadParameter(str(err), param_hint="--image-gc-low-threshold") from None
    from clrk.worker.main import serve

    run_guarded(lambda: asyncio.run(serve(name, data_dir, kubeconfig, namespace, pool, host,
                                          port, capacity, set(insecure_registry or []),
                                          index, network, upstream, disk)))


def _host_port(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise typer.BadParameter(f"{text!r}: expected host:port", param_hint="--dns-upstream")
    return host.strip("[]"), int(port)
