"""`clrk dev`: the API server and controllers on this host, in the foreground."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import os
import signal
import ssl
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
import yaml
from lightkube import ApiError, AsyncClient
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import Secret

from clrk.api.workerpool import WorkerPool
from clrk.cli.dev_commands import DEV_LOG, components, status_json, table
from clrk.cli.dev_commands import logs as dev_logs
from clrk.cli.dev_commands import reload as dev_reload
from clrk.cli.dev_commands import wait_ready as dev_wait_ready
from clrk.cli.dev_components import Component, envoy, process_uptime, since
from clrk.cli.dev_control import ControlServer, Handler, NotRunning
from clrk.cli.errors import CLIError, describe, run_guarded
from clrk.cli.manifests import Manifest, apply_request, load
from clrk.cli.secret import parse_secret_flag
from clrk.client import FIELD_MANAGER, resource_class
from clrk.controlplane.instance_lock import AlreadyRunning, InstanceLock
from clrk.kubeconfig import HOST_KUBECONFIG
from clrk.oci import dev_registry
from clrk.oci.dev_registry import DEFAULT_PORT as DEFAULT_REGISTRY_PORT
from clrk.oci.dev_registry import DevRegistry, RegistryError

if TYPE_CHECKING:
    from clrk.controlplane.assembly import ControlPlane
    from clrk.controlplane.otlp_tee import OTLPTee


@dataclass(frozen=True)
class OTLPOptions:
    """The tee's receiver port, where it forwards, and whether a TUI reads it here."""

    port: int = 0
    forward: str | None = None
    tui: bool = False

log = logging.getLogger("clrk.dev")
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
app = typer.Typer(help="Run clrk on this host.")


async def _apply(client: AsyncClient, m: Manifest) -> None:
    """Server-side apply, strict as `clrk apply` and kubectl."""
    await client._client.request(**apply_request(m, "default", force=True))


async def _bootstrap(client: AsyncClient, secrets: dict[str, dict[str, bytes]],
                     manifests: list[Manifest]) -> None:
    for name, data in secrets.items():
        body = Secret(metadata=ObjectMeta(name=name, namespace="default"), type="Opaque",
                      data={k: base64.b64encode(v).decode() for k, v in data.items()})
        await client.apply(body, field_manager=FIELD_MANAGER, force=True)
        print(f"secret/{name} configured", flush=True)
    pools = resource_class(WorkerPool)
    try:
        await client.get(pools, "default", namespace="default")
    except ApiError as err:
        if err.status.code != 404:
            raise
        pool = pools(metadata=ObjectMeta(name="default", namespace="default"),
                     spec={"replicas": 1})
        await client.apply(pool, field_manager=FIELD_MANAGER)
        print("workerpool.clrk.apoxy.dev/default created", flush=True)
    for m in manifests:
        try:
            await _apply(client, m)
            print(f"{m.label} serverside-applied", flush=True)
        except Exception as err:
            print(f"error: {m.source}: {m.label}: {describe(err)}", file=sys.stderr, flush=True)


class WorkerProcesses:
    """`clrk dev`'s workers: started as child processes, restarted if one dies."""

    def __init__(self, n: int, data_dir: Path, kubeconfig: Path, insecure: list[str]) -> None:
        self.n = n
        self.data_dir = data_dir
        self.kubeconfig = kubeconfig
        self.insecure = insecure
        self.procs: dict[int, asyncio.subprocess.Process] = {}
        self.restarts: dict[int, int] = {}
        self._restarting: set[int] = set()
        self._stopping = False
        self._watch: asyncio.Task[None] | None = None

    async def _spawn(self, i: int) -> None:
        wdir = self.data_dir / "workers" / f"worker-{i}"
        wdir.mkdir(parents=True, exist_ok=True)
        args = [sys.executable, "-m", "clrk.cli.main", "worker", "--api-kubeconfig",
                str(self.kubeconfig), "--data-dir", str(wdir), "--name", f"worker-{i}",
                "--index", str(i)]
        for reg in self.insecure:
            args += ["--insecure-registry", reg]
        with (wdir / "worker.log").open("ab") as log_file:
            self.procs[i] = await asyncio.create_subprocess_exec(
                *args, stdin=asyncio.subprocess.DEVNULL, stdout=log_file, stderr=log_file,
                start_new_session=True)
        (wdir / "worker.pid").write_text(str(self.procs[i].pid))

    async def start(self) -> None:
        for i in range(self.n):
            await self._spawn(i)
        self._watch = asyncio.create_task(self._supervise())

    async def _supervise(self) -> None:
        while not self._stopping:
            await asyncio.sleep(0.5)
            for i, proc in list(self.procs.items()):
                if proc.returncode is not None and not self._stopping \
                        and i not in self._restarting:
                    log.warning("worker-%d exited with %s; restarting it", i, proc.returncode)
                    self.restarts[i] = self.restarts.get(i, 0) + 1
                    await self._spawn(i)  # the new worker sweeps what the old one left

    async def restart(self, i: int) -> None:
        """Stop worker-``i`` as SIGTERM does (it drains) and start it again: its state
        is in the API server and its data dir, so nothing is lost."""
        if i not in self.procs:
            known = ", ".join(f"worker-{n}" for n in sorted(self.procs))
            raise ValueError(f"there is no worker-{i} ("
                             + (f"workers: {known})" if known else "this clrk dev runs none)"))
        self._restarting.add(i)
        try:
            await _terminate(self.procs[i])
            self.restarts[i] = self.restarts.get(i, 0) + 1
            log.info("worker-%d restarted (clrk dev reload)", i)
            await self._spawn(i)
        finally:
            self._restarting.discard(i)

    def components(self, fresh: set[str]) -> list[Component]:
        """Each worker (ready once its heartbeat is fresh) and its Envoy."""
        out = []
        for i, proc in sorted(self.procs.items()):
            name = f"worker-{i}"
            wdir = self.data_dir / "workers" / name
            uptime = process_uptime(proc.pid) if proc.returncode is None else None
            state = "exited" if uptime is None else "running" if name in fresh else "starting"
            out.append(Component(name, state, name in fresh and uptime is not None, proc.pid,
                                 uptime, log=str(wdir / "worker.log"),
                                 restarts=self.restarts.get(i, 0)))
            out.append(envoy(name, wdir))
        return out

    async def stop(self) -> None:
        self._stopping = True
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
        await asyncio.gather(*(_terminate(p) for p in self.procs.values()))


async def _terminate(proc: asyncio.subprocess.Process, grace: float = 30) -> None:
    if proc.returncode is None:
        proc.send_signal(signal.SIGTERM)
    try:
        await asyncio.wait_for(proc.wait(), grace)
    except TimeoutError:
        proc.kill()
        await proc.wait()


async def _serve(data_dir: Path, host: str, port: int, secrets: dict[str, dict[str, bytes]],
                 manifests: list[Manifest], concurrency: int, workers: int,
                 ingress_port: int, insecure: list[str], registry: DevRegistry | None,
                 otlp: OTLPOptions) -> None:
    lock = InstanceLock(data_dir)
    try:
        lock.acquire()
    except AlreadyRunning as err:
        raise CLIError(str(err)) from None
    # Its own log, beside the workers', for `clrk dev logs` (the terminal has it too).
    file_log = logging.FileHandler(data_dir / DEV_LOG)
    file_log.setFormatter(logging.Formatter(LOG_FORMAT))
    logging.getLogger().addHandler(file_log)
    try:
        await _serve_locked(lock, data_dir, host, port, secrets, manifests, concurrency,
                            workers, ingress_port, insecure, registry, otlp)
    finally:
        logging.getLogger().removeHandler(file_log)
        file_log.close()
        lock.release()


async def _serve_locked(lock: InstanceLock, data_dir: Path, host: str, port: int,
                        secrets: dict[str, dict[str, bytes]], manifests: list[Manifest],
                        concurrency: int, workers: int, ingress_port: int,
                        insecure: list[str], registry: DevRegistry | None,
                        otlp: OTLPOptions) -> None:
    if registry is not None:
        try:
            await registry.start()
        except RegistryError as err:
            raise CLIError(str(err)) from err
        insecure = [*insecure, registry.host]
    # Imported here: the whole control plane (chDB, uvicorn) costs every other `clrk`
    # command half a second to load.
    from clrk.controlplane.assembly import ControlPlane
    from clrk.controlplane.otlp_tee import OTLPTee

    plane = ControlPlane(data_dir, host, port, ingress_port, concurrency)
    started = time.time()
    try:
        tee = OTLPTee("127.0.0.1", otlp.port, otlp.forward)
    except OSError as err:
        if registry is not None:
            await registry.stop()
        raise CLIError(f"--otlp-port {otlp.port}: {err.strerror or err}") from None
    try:
        await plane.start()
        assert plane.server.telemetry is not None
        await tee.start(plane.server.telemetry)
    except BaseException:
        await tee.stop()
        if registry is not None:
            await registry.stop()
        raise
    kubeconfig = plane.kubeconfig
    lock.record(api=plane.server.url)
    worker_procs = WorkerProcesses(workers, data_dir, kubeconfig, insecure)
    await worker_procs.start()
    control = ControlServer(data_dir, _control(plane, worker_procs, registry, tee, data_dir,
                                               started))
    await control.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await _bootstrap(plane.client, secrets, manifests)
        banner = (f"clrk dev is running\n  API:        {plane.server.url}\n"
                  f"  ingress:    {plane.ingress.url}\n"
                  f"  OTLP:       {tee.url} (the tee of every record"
                  + (f", forwarded to {otlp.forward})\n" if otlp.forward else ")\n")
                  + f"  workers:    {workers}\n"
                  f"  registry:   {registry.host if registry else 'none (--no-registry)'}\n"
                  f"  kubeconfig: {kubeconfig}\n"
                  f"  export KUBECONFIG={kubeconfig}")
        (data_dir / "ingress.url").write_text(plane.ingress.url)
        if otlp.tui:
            log.info("%s", banner)
            await _run_tui(data_dir, stop)
        else:
            print(banner + "\nPress Ctrl-C to stop.", flush=True)
            await stop.wait()
    finally:
        await control.stop()
        await worker_procs.stop()
        await tee.stop()
        await plane.stop()
        if registry is not None:
            await registry.stop()
        print("clrk dev stopped", flush=True)


async def _run_tui(data_dir: Path, stop: asyncio.Event) -> None:
    """The TUI in its own process on this terminal (its rendering never touches the
    API server's loop); `clrk dev` stops when it quits, or on SIGTERM."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "clrk.cli.main", "--data-dir", str(data_dir), "dev", "tui")
    waiting = asyncio.create_task(proc.wait())
    stopping = asyncio.create_task(stop.wait())
    await asyncio.wait({waiting, stopping}, return_when=asyncio.FIRST_COMPLETED)
    stopping.cancel()
    if not waiting.done():
        await _terminate(proc, grace=5)


def _control(plane: ControlPlane, workers: WorkerProcesses, registry: DevRegistry | None,
             tee: OTLPTee, data_dir: Path, started: float) -> dict[str, Handler]:
    """What `clrk dev status|wait-ready|reload` ask the running instance (``started``:
    when the API server started)."""
    dev_log = str(data_dir / DEV_LOG)

    async def status(_: dict[str, Any]) -> dict[str, Any]:
        parts = [Component("api-server", "running", True, os.getpid(), since(started),
                           plane.server.url, dev_log),
                 Component("ingress", "running", True, os.getpid(), since(started),
                           plane.ingress.url, dev_log)]
        running = plane.controllers_running
        parts.append(Component("controller-manager", "running" if running else "exited",
                               running, os.getpid(),
                               since(plane.controllers_started) if running else None,
                               log=dev_log))
        parts.append(Component("otlp-receiver", "running", True, os.getpid(), since(started),
                               tee.url, dev_log))
        if registry is not None:
            proc = getattr(registry, "proc", None)
            uptime = process_uptime(proc.pid) if proc is not None else None
            parts.append(Component("registry", "running" if uptime is not None else "exited",
                                   uptime is not None, proc.pid if proc else None, uptime,
                                   registry.host, str(registry.root / "registry.log"),
                                   registry.restarts))
        parts += workers.components(plane.server.registry.fresh_names())
        return {"dataDir": str(data_dir), "components": [p.to_json() for p in parts]}

    async def reload(request: dict[str, Any]) -> dict[str, Any]:
        target = str(request.get("component", ""))
        if target == "controller-manager":
            await plane.restart_controllers()
        elif target == "worker":
            for i in sorted(workers.procs):
                await workers.restart(i)
        elif target.startswith("worker-") and target[len("worker-"):].isdigit():
            await workers.restart(int(target[len("worker-"):]))
        else:
            raise ValueError(f"cannot reload {target!r}: name worker, worker-N or "
                             "controller-manager")
        return {"reloaded": target}

    return {"status": status, "reload": reload}


def _secrets(specs: list[str]) -> dict[str, dict[str, bytes]]:
    out: dict[str, dict[str, bytes]] = {}
    for spec in specs:
        name, var, key = parse_secret_flag(spec)
        if var not in os.environ:
            raise CLIError(f"--secret {spec}: environment variable {var} is not set")
        out.setdefault(name, {})[key] = os.environ[var].encode()
    return out



@app.callback(invoke_without_command=True)
def dev(
    ctx: typer.Context,
    port: Annotated[int, typer.Option("--port", help="API port (0 = any free port).")] = 0,
    host: Annotated[str, typer.Option("--host", help="Address the API server listens on.")
                    ] = "127.0.0.1",
    apply: Annotated[list[str] | None, typer.Option("--apply", help="Manifests to apply.")
                     ] = None,
    recursive: Annotated[bool, typer.Option(
        "-R", "--recursive", help="Read the directories given with --apply recursively.")
    ] = False,
    secret: Annotated[list[str] | None, typer.Option(
        "--secret", help="NAME=ENVVAR[:KEY]: a Secret from an environment variable.")] = None,
    controller_concurrency: Annotated[int, typer.Option(
        "--controller-concurrency", min=1,
        help="Objects each controller reconciles at once.")] = 2,
    no_tui: Annotated[bool, typer.Option(
        "--no-tui", help="Plain log output (also when stdout is not a terminal).")] = False,
    otlp_port: Annotated[int, typer.Option(
        "--otlp-port", min=0, max=65535,
        help="Port of the OTLP/HTTP receiver on 127.0.0.1 that every record is teed to "
             "(0 = any free port).")] = 0,
    otlp_forward: Annotated[str | None, typer.Option(
        "--otlp-forward", metavar="URL",
        help="Send the tee on to this OTLP/HTTP collector too (URL without /v1/...).")
    ] = None,
    workers: Annotated[int, typer.Option("--workers", min=0, help="Worker processes.")] = 1,
    ingress_port: Annotated[int, typer.Option("--ingress-port",
                                              help="HTTP ingress port (0 = any).")] = 0,
    insecure_registry: Annotated[list[str] | None, typer.Option(
        "--insecure-registry", help="host:port of a registry reached over plain HTTP.")
    ] = None,
    registry_port: Annotated[int | None, typer.Option(
        "--registry-port", min=0, max=65535,
        help=f"Port of the dev registry on 127.0.0.1 (default: the one used before, else "
             f"{DEFAULT_REGISTRY_PORT}; 0 = any free port).")] = None,
    no_registry: Annotated[bool, typer.Option("--no-registry",
                                              help="Run no dev registry.")] = False,
) -> None:
    """Run the API server and the controllers until Ctrl-C; state survives restarts.

    State lives in the global --data-dir (default ~/.clrk, or $CLRK_HOME)."""
    if ctx.invoked_subcommand:
        return
    data_dir: Path = ctx.obj.data_dir
    if no_registry and registry_port is not None:
        raise CLIError("--registry-port and --no-registry exclude each other")
    secrets = _secrets(secret or [])
    manifests = load(apply, recursive) if apply else []
    if otlp_forward is not None and not otlp_forward.startswith(("http://", "https://")):
        raise CLIError(f"--otlp-forward {otlp_forward!r}: give an http:// or https:// URL")
    registry = None if no_registry else DevRegistry(data_dir, registry_port)
    tui = not no_tui and sys.stdout.isatty() and sys.stdin.isatty()
    if tui:  # the screen is the TUI's; the log is in the data dir (clrk dev logs)
        logging.getLogger().setLevel(logging.INFO)
    else:
        logging.basicConfig(level=logging.INFO, stream=sys.stderr, format=LOG_FORMAT)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    otlp = OTLPOptions(otlp_port, otlp_forward, tui)
    run_guarded(lambda: asyncio.run(_serve(data_dir, host, port, secrets, manifests,
                                           controller_concurrency, workers, ingress_port,
                                           insecure_registry or [], registry, otlp)))


@app.command("status")
def status(ctx: typer.Context, as_json: Annotated[bool, typer.Option(
        "--json", help="Print it as JSON.")] = False) -> None:
    """Is `clrk dev` running? Where, what does it hold, and how is each component?"""
    data_dir: Path = ctx.obj.data_dir
    kubeconfig = data_dir / HOST_KUBECONFIG
    if not kubeconfig.exists():
        raise CLIError(f"clrk dev has not run with data dir {data_dir} ({kubeconfig} missing)")
    doc: dict[str, Any] = yaml.safe_load(kubeconfig.read_text())
    cluster = doc["clusters"][0]["cluster"]
    server = cluster["server"]
    tls = ssl.create_default_context(
        cadata=base64.b64decode(cluster["certificate-authority-data"]).decode())
    try:
        with urllib.request.urlopen(f"{server}/readyz", context=tls, timeout=3) as r:
            ready = r.status == 200
    except OSError:
        ready = False
    if not ready:
        raise CLIError(f"clrk dev is not running (nothing answers at {server})")
    from clrk.api.agents import DaemonAgent, TaskAgent
    from clrk.api.gateway import EgressGateway
    from clrk.cli.context import Options

    client = Options(kubeconfig=kubeconfig, data_dir=data_dir).client()
    counts = {cls.kind_info.plural: len(list(client.list(resource_class(cls), namespace="*")))
              for cls in (TaskAgent, DaemonAgent, WorkerPool, EgressGateway)}
    try:
        parts = components(data_dir)
    except NotRunning as err:
        raise CLIError(str(err)) from None
    registry = dev_registry.address(data_dir)
    if as_json:
        print(status_json(parts, dataDir=str(data_dir), api=server, registry=registry,
                          kubeconfig=str(kubeconfig), objects=counts))
        return
    print(f"clrk dev is running\n  API:        {server}\n"
          f"  registry:   {registry or 'none'}\n"
          f"  kubeconfig: {kubeconfig}")
    for plural, n in counts.items():
        print(f"  {plural + ':':<16}{n}")
    print()
    print(table(parts))


@app.command("tui")
def tui(ctx: typer.Context) -> None:
    """Watch the running `clrk dev` in the terminal UI (what `clrk dev` shows on a
    terminal): agents, system components, the live otel-logs and otel-traces."""
    data_dir: Path = ctx.obj.data_dir
    try:
        components(data_dir)
    except NotRunning as err:
        raise CLIError(str(err)) from None
    from clrk.cli.tui.app import DevTUI

    DevTUI(data_dir).run()


app.command("logs")(dev_logs)
app.command("wait-ready")(dev_wait_ready)
app.command("reload")(dev_reload)
