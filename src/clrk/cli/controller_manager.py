"""`clrk controller-manager`: what the controller-manager Deployment's pod runs.

The same control plane as `clrk dev` (API server, scheduler, telemetry, controllers), in
cluster mode: clrk's group served behind kube-aggregator with kube-apiserver deciding who
may do what, the controllers talking to kube-apiserver with the pod's ServiceAccount and
reconciling only while they hold the Lease. It exits non-zero when it loses the Lease, so
its pod restarts and campaigns afresh, as client-go controllers do.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from lightkube import ConfigError, KubeConfig
from lightkube.config.kubeconfig import SingleConfig

from clrk.cli.errors import CLIError, run_guarded

if TYPE_CHECKING:
    from clrk.controlplane.assembly import ControlPlane

log = logging.getLogger("clrk.controller-manager")


def _kube(kubeconfig: Path | None) -> SingleConfig:
    try:
        config = (KubeConfig.from_file(str(kubeconfig)) if kubeconfig is not None
                  else KubeConfig.from_service_account())
    except (ConfigError, OSError) as err:
        where = str(kubeconfig) if kubeconfig else "the pod's ServiceAccount"
        raise CLIError(f"cannot load the credentials for kube-apiserver from {where}: "
                       f"{err}") from None
    single = config.get()
    if single is None:
        raise CLIError(f"kubeconfig {kubeconfig} has no current context")
    return single


async def _serve(plane: ControlPlane) -> int:
    await plane.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    log.info("serving clrk.apoxy.dev on %s, ingress on %s", plane.server.url,
             plane.ingress.url)
    lost = asyncio.create_task(plane.lost_lease.wait())
    stopped = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait([lost, stopped], return_when=asyncio.FIRST_COMPLETED)
    finally:
        lost.cancel()
        stopped.cancel()
        await plane.stop()
    return 1 if plane.lost_lease.is_set() else 0


def controller_manager(
    data_dir: Annotated[Path, typer.Option(
        "--data-dir", help="State and telemetry (the Deployment's volume).")
    ] = Path("/var/lib/clrk"),
    bind_address: Annotated[str, typer.Option(
        "--bind-address", help="Address to serve the API and the ingress on.")
    ] = "0.0.0.0",
    secure_port: Annotated[int, typer.Option(
        "--secure-port", help="HTTPS port of the API (the APIService's Service).")] = 8443,
    ingress_port: Annotated[int, typer.Option(
        "--ingress-port", help="HTTP port of the agent ingress.")] = 8080,
    tls_cert_dir: Annotated[Path, typer.Option(
        "--tls-cert-dir", help="Directory with tls.crt and tls.key (the serving Secret).")
    ] = Path("/etc/clrk/tls"),
    kubeconfig: Annotated[Path | None, typer.Option(
        "--kubeconfig", help="Credentials for kube-apiserver (default: the pod's "
        "ServiceAccount).")] = None,
    leader_elect: Annotated[bool, typer.Option(
        "--leader-elect/--no-leader-elect",
        help="Reconcile only while holding a coordination.k8s.io Lease.")] = True,
    leader_election_namespace: Annotated[str | None, typer.Option(
        "--leader-election-namespace", help="Namespace of the Lease (default: the pod's).")
    ] = None,
    leader_election_id: Annotated[str, typer.Option(
        "--leader-election-id", help="Name of the Lease.")] = "clrk-controller-manager",
    lease_duration: Annotated[float, typer.Option(
        "--lease-duration", min=2, help="Seconds a candidate waits before taking over.")
    ] = 15.0,
    renew_deadline: Annotated[float, typer.Option(
        "--renew-deadline", min=1, help="Seconds the leader keeps leading without renewing.")
    ] = 10.0,
    retry_period: Annotated[float, typer.Option(
        "--retry-period", min=0.2, help="Seconds between Lease attempts and renewals.")
    ] = 2.0,
    identity: Annotated[str | None, typer.Option(
        "--identity", help="This candidate's name in the Lease (default: the pod's name).")
    ] = None,
    controller_concurrency: Annotated[int, typer.Option(
        "--controller-concurrency", min=1, help="Objects reconciled at once per kind.")
    ] = 2,
    worker_image: Annotated[str | None, typer.Option(
        "--worker-image", help="Image of the worker pods of pools that name none "
        "(default: the worker image of this version).")] = None,
    clickhouse_url: Annotated[str | None, typer.Option(
        "--clickhouse-url", envvar="CLRK_CLICKHOUSE_URL",
        help="A ClickHouse server's HTTP interface for telemetry, "
             "http(s)://user:password@host:port/database (all but the host optional; "
             "default: chDB in --data-dir). Best given by the environment, from a "
             "Secret.")] = None,
) -> None:
    """Run the cluster control plane (the controller-manager Deployment's entrypoint)."""
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)

    def run() -> None:
        # Imported here, not at load: every other `clrk` command would pay for it.
        from clrk.controlplane.assembly import ClusterMode, ControlPlane, LeaseSettings
        from clrk.telemetry.store import check_server_url

        if clickhouse_url:
            try:
                check_server_url(clickhouse_url)
            except ValueError as err:
                raise CLIError(f"--clickhouse-url: {err}") from None
        for name in ("tls.crt", "tls.key"):
            if not (tls_cert_dir / name).is_file():
                raise CLIError(f"--tls-cert-dir {tls_cert_dir}: {name} is missing")
        lease = None
        if leader_elect:
            lease = LeaseSettings(
                namespace=leader_election_namespace or os.environ.get("POD_NAMESPACE")
                or "clrk",
                name=leader_election_id,
                identity=identity or os.environ.get("POD_NAME") or socket.gethostname(),
                lease_duration=lease_duration, renew_deadline=renew_deadline,
                retry_period=retry_period)
        plane = ControlPlane(data_dir, bind_address, secure_port, ingress_port,
                             controller_concurrency,
                             cluster=ClusterMode(_kube(kubeconfig), tls_cert_dir, lease,
                                                 worker_image or "", clickhouse_url or ""))
        code = asyncio.run(_serve(plane))
        if code:
            raise SystemExit(code)

    run_guarded(run)
