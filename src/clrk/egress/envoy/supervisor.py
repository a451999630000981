"""The node-local Envoy: started with the generated bootstrap, restarted when it dies
(with a growing pause if it keeps dying), stopped with SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import logging
import os
import re
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from clrk import children
from clrk.egress.envoy import xds_files
from clrk.egress.envoy.binary import envoy_binary

log = logging.getLogger("clrk.egress.envoy")
_PR_SET_PDEATHSIG = 1
# "name: value" lines of /stats; text readouts are quoted ("version_text: \"123\"").
_STAT = re.compile(r'(?m)^([\w.]+): "?([^"\n]*)"?$')
LISTENERS_WAIT = 10.0  # seconds a listener change waits for Envoy to load its clusters


def _die_with_parent() -> None:
    """In the child before exec: SIGKILL when the worker dies, even by SIGKILL."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


class EnvoySupervisor:
    def __init__(self, config_dir: Path, admin_port: int, node_id: str,
                 concurrency: int = 1) -> None:
        self.config_dir = config_dir
        self.admin_port = admin_port
        self.node_id = node_id
        self.concurrency = concurrency
        self.restarts = 0
        self.written: tuple[str, str] = ("", "")  # (clusters, listeners) versions
        self._listeners: list[dict[str, Any]] = []
        self._ordering: asyncio.Task[None] | None = None
        self.proc: asyncio.subprocess.Process | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    async def start(self) -> None:
        self.config_dir.mkdir(parents=True, exist_ok=True)
        # Always empty at first: a previous worker's files name its own gateway ports, and
        # this worker numbers its gateways anew; Envoy loading the old listeners and then
        # the new ones, moved between ports, refused every move as a duplicate address and
        # kept the old, so after `clrk dev reload worker-N` gateways answered on the wrong
        # ports (found by the console's browser test).
        self.write([], [])
        boot = self.config_dir / "bootstrap.json"
        boot.write_text(json.dumps(xds_files.bootstrap(self.config_dir, self.node_id,
                                                       self.admin_port)))
        await self._spawn()
        self._task = asyncio.create_task(self._watch())

    def _kill_leftover(self) -> None:
        """An Envoy a killed predecessor left behind (it holds the ports)."""
        pid_file = self.config_dir / "envoy.pid"
        with contextlib.suppress(OSError, ValueError):
            pid = int(pid_file.read_text())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            if str(self.config_dir / "bootstrap.json").encode() in cmdline:
                os.kill(pid, signal.SIGKILL)
                log.info("killed envoy %d left by a previous worker", pid)

    async def _spawn(self) -> None:
        self._kill_leftover()
        log_file = (self.config_dir / "envoy.log").open("ab")
        self.proc = await asyncio.create_subprocess_exec(
            str(envoy_binary()), "-c", str(self.config_dir / "bootstrap.json"),
            "--concurrency", str(self.concurrency), "--disable-hot-restart",
            "--log-level", "warning", "--file-flush-interval-msec", "250",
            stdin=asyncio.subprocess.DEVNULL,
            stdout=log_file, stderr=log_file, preexec_fn=_die_with_parent)
        log_file.close()
        (self.config_dir / "envoy.pid").write_text(str(self.proc.pid))

    async def _watch(self) -> None:
        delay = 0.5
        while not self._stopping.is_set():
            assert self.proc is not None
            code = await self.proc.wait()
            if self._stopping.is_set():
                return
            self.restarts += 1
            log.warning("envoy exited with %s; restarting in %.1fs", code, delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), delay)
            if self._stopping.is_set():
                return
            await self._spawn()
            delay = min(delay * 2, 30.0)

    async def ready(self, timeout: float = 30.0) -> None:
        """Until the admin endpoint says LIVE (the config loaded)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        async with httpx.AsyncClient(timeout=1) as client:
            while True:
                with contextlib.suppress(httpx.HTTPError):
                    r = await client.get(f"{self.admin_url}/ready")
                    if r.status_code == 200:
                        return
                if loop.time() > deadline:
                    raise TimeoutError(f"envoy did not become ready; see "
                                       f"{self.config_dir / 'envoy.log'}")
                await asyncio.sleep(0.1)

    def write(self, listeners: list[dict[str, Any]], clusters: list[dict[str, Any]]) -> None:
        """New configuration for Envoy (xDS files), remembered for :meth:`loaded`.

        Clusters at once, listeners once Envoy reports those clusters loaded: its two
        file watches are not ordered, and a route that reaches Envoy before its cluster
        answers 503 ("cluster not found"). While no Envoy runs, both at once (Envoy
        starts by loading its clusters, then its listeners)."""
        clusters_version = xds_files.write_clusters(self.config_dir, clusters)
        self.written = clusters_version, xds_files.listeners_version(listeners)
        self._listeners = listeners
        if self.proc is None or self.proc.returncode is not None:
            xds_files.write_listeners(self.config_dir, listeners)
        elif self._ordering is None or self._ordering.done():
            self._ordering = asyncio.create_task(self._listeners_after_clusters())

    async def _listeners_after_clusters(self) -> None:
        """Writes the latest listeners once Envoy has the latest clusters (or has not
        answered within LISTENERS_WAIT: then anyway, as before this ordering)."""
        if not await self._reports(("cluster_manager.cds.version_text",),
                                   lambda: self.written[:1], LISTENERS_WAIT):
            log.warning("envoy did not report clusters %s within %gs; writing its "
                        "listeners anyway", self.written[0], LISTENERS_WAIT)
        # The latest listeners: a write while waiting changed what was waited for too.
        xds_files.write_listeners(self.config_dir, self._listeners)

    async def loaded(self, timeout: float) -> bool:
        """Whether Envoy serves the configuration last written (its cluster and listener
        versions, no listener still warming) within ``timeout``; False otherwise. A
        newer write while waiting is what is waited for then (it contains the older)."""
        names = ("cluster_manager.cds.version_text", "listener_manager.lds.version_text",
                 "listener_manager.total_listeners_warming")
        return await self._reports(names, lambda: (*self.written, "0"), timeout)

    async def _reports(self, names: tuple[str, ...], values: Callable[[], tuple[str, ...]],
                       timeout: float) -> bool:
        """Whether Envoy's stats ``names`` read ``values()`` (asked at each look: what
        is waited for follows the latest write) within ``timeout``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        url = f"{self.admin_url}/stats?filter=" + "|".join(re.escape(n) for n in names)
        async with httpx.AsyncClient(timeout=1) as client:
            while True:
                with contextlib.suppress(httpx.HTTPError):
                    seen = dict(_STAT.findall((await client.get(url)).text))
                    if tuple(seen.get(n) for n in names) == values():
                        return True
                if loop.time() > deadline:
                    return False
                await asyncio.sleep(0.01)

    async def reopen_logs(self) -> None:
        """Envoy reopens its access logs (after one was renamed to rotate it)."""
        with contextlib.suppress(httpx.HTTPError):
            async with httpx.AsyncClient(timeout=2) as client:
                await client.post(f"{self.admin_url}/reopen_logs")

    async def stop(self) -> None:
        self._stopping.set()
        if self._ordering is not None:
            self._ordering.cancel()
        await children.stop(self.proc)
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
