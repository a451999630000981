"""Running a bundle under runsc (gVisor, ptrace platform) and cleaning up after it.

`runsc run` supervises the sandbox and exits with the agent's exit code; the agent's
stdout is streamed to the caller as it comes. An execution ends at the exit marker of
the sandbox's init (exit_report.py) or, without one, at the stdio pipes' EOF, which
comes after gVisor's teardown. A timeout kills the sandbox. Deletion takes a second or
two, so it happens in the background; a worker that starts removes whatever a crashed
predecessor left (sandboxes, bundles, cgroups).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import shutil
import signal
import termios
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clrk.worker.sandbox import bundle, cgroups, exit_report
from clrk.worker.sandbox.exit_report import ExitReport
from clrk.worker.sandbox.spec import RunSpec

log = logging.getLogger("clrk.worker.sandbox")
RUNSC = "runsc"


@dataclass
class Result:
    exit_code: int | None  # None when killed for the timeout
    timed_out: bool
    stderr: bytes = b""
    reason: str = ""
    stopped: bool = False  # ended because the caller asked (SIGTERM, then SIGKILL)


STOP_GRACE = 5.0
REAP_GRACE = 5.0  # for the teardown after the init reported the agent's exit


class _Output(asyncio.Protocol):
    """One of the sandbox's output pipes, handed to its sink as bytes arrive. Our own pipe
    (not asyncio's subprocess streams) so that :meth:`drain` can ask the kernel whether
    anything is still unread."""

    def __init__(self, fd: int, report: ExitReport | None = None) -> None:
        self.fd = fd
        self.report = report
        self.reported = asyncio.Event()
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._sink: Callable[[bytes], None] = lambda _: None
        self._transport: asyncio.ReadTransport | None = None

    async def open(self, sink: Callable[[bytes], None]) -> None:
        self._sink = sink
        loop = asyncio.get_running_loop()
        self._transport, _ = await loop.connect_read_pipe(lambda: self,
                                                          os.fdopen(self.fd, "rb", 0))

    def data_received(self, data: bytes) -> None:
        if self.report is not None:
            data = self.report.feed(data)
            if self.report.code is not None:
                self.reported.set()
        if data:
            self._sink(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.report is not None and (rest := self.report.flush()):
            self._sink(rest)
        if not self.closed.done():
            self.closed.set_result(None)

    async def drain(self) -> None:
        """Hand on everything already written to the pipe: the agent's writes completed
        before its exit was reported, so what is unread is in the kernel's buffer."""
        while not self.closed.done():
            try:
                pending = int.from_bytes(fcntl.ioctl(self.fd, termios.FIONREAD, b"\0" * 4),
                                         "little")
            except OSError:
                return
            if pending == 0:
                return
            await asyncio.sleep(0)

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
        elif not self.closed.done():
            os.close(self.fd)
            self.closed.set_result(None)


@dataclass
class Runtime:
    """runsc with our state directory; one per worker."""

    state_dir: Path
    platform: str = "ptrace"
    busybox: Path | None = field(default_factory=exit_report.host_busybox)
    own_cgroups: bool = field(default_factory=cgroups.available)
    _cleanups: set[asyncio.Task[None]] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        (self.state_dir / "bundles").mkdir(exist_ok=True)

    def _base(self, network: str = "none") -> list[str]:
        return [RUNSC, "--root", str(self.state_dir / "runsc"), f"--platform={self.platform}",
                f"--network={network}", *(["--ignore-cgroups"] if self.own_cgroups else [])]

    def _run_command(self, spec: RunSpec, bdir: Path, sid: str,
                     procs: list[Path]) -> list[str]:
        join = f"{cgroups.join_script(procs)} && " if procs else ""
        if spec.netns is None:
            run = [*self._base(), "run", "--bundle", str(bdir), sid]
            return ["sh", "-c", f'{join}exec "$@"', "sh", *run] if join else run
        # With a network, runsc refuses to start when it can see the root namespace's
        # /proc/sys/net; hide it with a tmpfs in a private mount namespace (design.md).
        return ["unshare", "-m", "sh", "-c",
                f'{join}mount -t tmpfs tmpfs /proc/sys/net && exec "$@"', "sh",
                *self._base("sandbox"), "run", "--bundle", str(bdir), sid]

    async def _runsc(self, *args: str) -> tuple[int, bytes]:
        proc = await asyncio.create_subprocess_exec(
            *self._base(), *args, stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        out, _ = await proc.communicate()
        return proc.returncode or 0, out

    async def start(self, spec: RunSpec) -> Sandbox:
        """Start the agent; it runs until it blocks on stdin (read in :meth:`Sandbox.finish`).
        A warm pool starts sandboxes ahead this way."""
        sid = f"clrk-{uuid.uuid4().hex[:12]}"
        report = None
        run = spec
        if self.busybox is not None:
            run, report = exit_report.wrap(spec, self.busybox)
        bdir = bundle.write(self.state_dir / "bundles" / sid, run, f"/{cgroups.PARENT}/{sid}")
        procs = cgroups.create(sid, spec.memory, spec.cpu, spec.host_pids) \
            if self.own_cgroups else []
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        try:
            proc = await asyncio.create_subprocess_exec(
                *self._run_command(run, bdir, sid, procs),
                stdin=asyncio.subprocess.PIPE, stdout=out_w, stderr=err_w)
        except BaseException:
            for fd in (out_r, err_r):
                os.close(fd)
            cgroups.remove(sid)
            raise
        finally:
            os.close(out_w)
            os.close(err_w)
        watch = None if self.own_cgroups else asyncio.create_task(_watch_memory(sid))
        return Sandbox(self, spec, sid, bdir, proc, watch,
                       _Output(out_r), _Output(err_r, report))

    async def run(self, spec: RunSpec, stdin: bytes, timeout: float | None,
                  on_stdout: Callable[[bytes], None], on_stderr: Callable[[bytes], None],
                  stop: asyncio.Event | None = None) -> Result:
        sandbox = await self.start(spec)
        return await sandbox.finish(stdin, timeout, on_stdout, on_stderr, stop)

    def _in_background(self, work: Coroutine[Any, Any, None]) -> None:
        """Cleanup off the response path, which :meth:`drain` waits for."""
        task = asyncio.create_task(work)
        self._cleanups.add(task)
        task.add_done_callback(self._cleanups.discard)

    def _cleanup_later(self, sid: str, bdir: Path) -> None:
        self._in_background(self._delete(sid, bdir))

    def _reap_later(self, sandbox: Sandbox, ended: asyncio.Future[Any]) -> None:
        """After the init's report: the sandbox tears itself down; wait for that (or
        make it happen), then delete it."""
        async def reap() -> None:
            try:
                await asyncio.wait_for(asyncio.shield(ended), REAP_GRACE)
            except TimeoutError:  # something of the agent's lingers: the sandbox goes
                await self._runsc("kill", "--all", sandbox.sid, "KILL")
                with contextlib.suppress(ProcessLookupError):
                    sandbox.proc.kill()
            with contextlib.suppress(BaseException):
                await ended
            await sandbox.proc.wait()
            sandbox.close_outputs()
            await self._delete(sandbox.sid, sandbox.bdir)

        self._in_background(reap())

    async def _delete(self, sid: str, bdir: Path) -> None:
        await asyncio.sleep(0)  # the execution's result goes out first (see Network.teardown)
        await self._runsc("delete", "--force", sid)
        # The bundle goes last: it is how the next worker's sweep finds cgroups left over.
        await _remove_cgroups(sid)
        shutil.rmtree(bdir, ignore_errors=True)

    async def drain(self) -> None:
        """Wait for background deletions (worker shutdown, tests)."""
        while self._cleanups:
            await asyncio.gather(*list(self._cleanups), return_exceptions=True)

    def roots_in_use(self) -> set[Path]:
        """The root of every sandbox with a bundle here (running, warm, or being deleted):
        what the image store must not remove."""
        roots: set[Path] = set()
        for config in (self.state_dir / "bundles").glob("*/config.json"):
            with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
                roots.add(Path(json.loads(config.read_text())["root"]["path"]))
        return roots

    async def sandboxes(self) -> list[str]:
        code, out = await self._runsc("list", "--quiet")
        return out.decode().split() if code == 0 else []

    async def sweep(self) -> list[str]:
        """Remove every sandbox, bundle and cgroup a previous worker left behind; returns
        the sandboxes removed (one that could not be is logged as an error instead)."""
        leftovers = await self.sandboxes()
        for sid in leftovers:
            await self._runsc("kill", "--all", sid, "KILL")
            await self._delete(sid, self.state_dir / "bundles" / sid)
        stuck = set(await self.sandboxes())
        for sid in stuck & set(leftovers):
            self._remove_by_hand(sid)
        still = set(await self.sandboxes())
        for sid in sorted(still):
            log.error("sandbox %s is still in runsc's state after the sweep; remove %s by "
                      "hand", sid, self.state_dir / "runsc")
        for bdir in (self.state_dir / "bundles").iterdir():
            shutil.rmtree(bdir, ignore_errors=True)
            await _remove_cgroups(bdir.name)
        return [sid for sid in leftovers if sid not in still]

    def _remove_by_hand(self, sid: str) -> None:
        """A sandbox runsc can neither kill nor delete: a kill -9 during its creation left
        its state file torn ("unexpected end of JSON input"). Its processes are found by
        their command lines (this runtime's root and the sandbox's id), killed, and its
        state files removed."""
        root = str(self.state_dir / "runsc")
        killed = 0
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            try:
                args = (proc / "cmdline").read_bytes().decode(errors="replace").split("\0")
            except OSError:
                continue
            if sid in args and any(root in a for a in args):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(proc.name), signal.SIGKILL)
                    killed += 1
        for state in Path(root).glob(f"{sid}_*"):
            state.unlink(missing_ok=True)
        log.warning("sandbox %s: runsc could not remove it (its state is unreadable); killed "
                    "%d process(es) and removed its state by hand", sid, killed)


@dataclass
class Sandbox:
    """One started sandbox: feed it stdin once, collect its output and outcome."""

    runtime: Runtime
    spec: RunSpec
    sid: str
    bdir: Path
    proc: asyncio.subprocess.Process
    watch: asyncio.Task[None] | None  # only when runsc manages the cgroups
    stdout: _Output
    stderr: _Output
    used: bool = False

    @property
    def alive(self) -> bool:
        return self.proc.returncode is None

    def close_outputs(self) -> None:
        for output in (self.stdout, self.stderr):
            output.close()

    async def discard(self) -> None:
        """Kill a sandbox that will not be used (warm pool eviction)."""
        self.used = True
        await self.runtime._runsc("kill", "--all", self.sid, "KILL")
        with contextlib.suppress(ProcessLookupError):
            self.proc.kill()
        await self.proc.communicate()
        self.close_outputs()
        if self.watch is not None:
            self.watch.cancel()
        _MEMORY_HITS.pop(self.sid, None)
        _PIDS_HITS.pop(self.sid, None)
        self.runtime._cleanup_later(self.sid, self.bdir)

    async def finish(self, stdin: bytes, timeout: float | None,
                     on_stdout: Callable[[bytes], None], on_stderr: Callable[[bytes], None],
                     stop: asyncio.Event | None = None) -> Result:
        assert not self.used, "a sandbox runs one execution"
        self.used = True
        proc, sid, runtime = self.proc, self.sid, self.runtime
        assert proc.stdin
        stderr_tail = bytearray()

        def keep_stderr(chunk: bytes) -> None:
            on_stderr(chunk)
            stderr_tail.extend(chunk)
            del stderr_tail[:-8192]

        async def feed() -> None:
            assert proc.stdin
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                proc.stdin.write(stdin)
                await proc.stdin.drain()
            proc.stdin.close()

        feeding = asyncio.create_task(feed())
        await asyncio.gather(self.stdout.open(on_stdout), self.stderr.open(keep_stderr))
        timed_out = stopped = False
        code: int | None = None
        report = self.stderr.report
        # The pipes' EOF is the reliable end of a fast exit without an init's report.
        ended: asyncio.Future[Any] = asyncio.ensure_future(asyncio.gather(
            self.stdout.closed, self.stderr.closed, feeding))
        exited: asyncio.Future[Any] = asyncio.ensure_future(self.stderr.reported.wait())
        stopping: asyncio.Future[Any] = asyncio.ensure_future(
            stop.wait() if stop else asyncio.Event().wait())
        detached = False
        try:
            done, _ = await asyncio.wait([ended, exited, stopping], timeout=timeout,
                                         return_when=asyncio.FIRST_COMPLETED)
            if exited in done and ended not in done and report is not None:
                await self.stdout.drain()
                code = report.code
                detached = True  # gVisor's teardown goes on in the background
            elif ended in done or exited in done:
                code = await proc.wait()
            elif stopping in done:
                stopped = True
                await runtime._runsc("kill", "--all", sid, "TERM")
                try:
                    await asyncio.wait_for(asyncio.shield(ended), STOP_GRACE)
                except TimeoutError:
                    await runtime._runsc("kill", "--all", sid, "KILL")
                code = await proc.wait()
            else:
                timed_out = True
                await runtime._runsc("kill", "--all", sid, "KILL")
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
        finally:
            for waiter in (stopping, exited):
                waiter.cancel()
            if self.watch is not None:
                self.watch.cancel()
            else:
                _check_limits(sid)
            if detached:
                runtime._reap_later(self, ended)
            else:
                if not ended.done():
                    ended.cancel()
                with contextlib.suppress(BaseException):
                    await ended
                self.close_outputs()
                runtime._cleanup_later(sid, self.bdir)
        memory = _MEMORY_HITS.pop(sid, "")
        pids_hit = _PIDS_HITS.pop(sid, False)
        reason = "stopped" if stopped else end_reason(
            self.spec, code, timeout if timed_out else None, memory, pids_hit, stderr_tail)
        return Result(None if timed_out else code, timed_out, bytes(stderr_tail), reason,
                      stopped)


def end_reason(spec: RunSpec, code: int | None, timed_out_after: float | None, memory: str,
               pids_hit: bool, stderr_tail: bytes | bytearray) -> str:
    """Why a sandbox ended, in the agent's units ("" for an agent's own exit).
    ``memory`` is "killed" when the kernel's OOM killer acted in the sandbox's group,
    "near" when its usage only came within 5% of the limit. The OOM killer may take a
    stub or the sentry rather than the agent, and gVisor then ends with its own status
    (2 for a Go panic) instead of 137: a kill explains any failing status."""
    if timed_out_after is not None:
        return f"timed out after {timed_out_after:g}s"
    if not code:
        return ""
    if pids_hit:
        return (f"PidsLimit: the agent reached its limit of {spec.pids} processes and "
                "threads (resources.pids): a fork bomb, or more at once than the limit "
                "allows")
    if memory == "killed" or (memory and code == 137):
        return f"OOMKilled: the memory limit of {spec.memory} bytes was exceeded"
    if code >= 128:
        return f"killed by signal {code - 128}"
    if code == 127 and b"not found" in stderr_tail:
        return f"the command {spec.argv[0]!r} was not found in the image"
    return ""


async def _remove_cgroups(sid: str) -> None:
    """runsc's delete can return while the sandbox's processes are still exiting (or, for
    a killed `runsc run`, orphaned): kill what is left in its groups until they go. On a
    loaded host a sentry with a large address space takes seconds to exit (a CI run saw
    more than the 5 s this once allowed, and the groups stayed for good): the pauses grow
    to a second, for up to a minute."""
    loop = asyncio.get_running_loop()
    deadline, pause = loop.time() + CGROUP_REMOVAL_SECONDS, 0.1
    while True:
        cgroups.kill(sid)
        if cgroups.remove(sid):
            return
        if loop.time() > deadline:
            break
        await asyncio.sleep(pause)
        pause = min(pause * 1.5, 1.0)
    log.warning("the cgroups of sandbox %s could not be removed within %gs; the next "
                "worker start sweeps them", sid, CGROUP_REMOVAL_SECONDS)


CGROUP_REMOVAL_SECONDS = 60.0
_MEMORY_HITS: dict[str, str] = {}  # "killed" or "near" (see end_reason)
_PIDS_HITS: dict[str, bool] = {}


async def _watch_memory(sid: str) -> None:
    """Notice the memory or pids limit being hit while the sandbox runs, when runsc manages
    its cgroups (it removes them when it exits, taking the evidence with it), until the
    OOM killer acts. Our own cgroups outlive the sandbox: one look at the end is enough."""
    while not _check_limits(sid):
        await asyncio.sleep(0.02)


def _check_limits(sid: str) -> bool:
    """Record whether the sandbox's memory or pids limit was hit; True once the OOM
    killer acted (nothing more to learn)."""
    cgroup = cgroups.path("memory", sid)
    pids = cgroups.path("pids", sid)
    with contextlib.suppress(OSError, ValueError):
        fields = dict(line.split() for line in
                      (cgroup / "memory.oom_control").read_text().splitlines())
        usage = int((cgroup / "memory.max_usage_in_bytes").read_text())
        limit = int((cgroup / "memory.limit_in_bytes").read_text())
        if int(fields.get("oom_kill", "0")) > 0 or fields.get("under_oom") == "1":
            _MEMORY_HITS[sid] = "killed"
            return True
        if usage >= 0.95 * limit:
            _MEMORY_HITS[sid] = "near"
    if sid not in _PIDS_HITS:
        with contextlib.suppress(OSError, ValueError):
            events = dict(line.split() for line in
                          (pids / "pids.events").read_text().splitlines())
            current = int((pids / "pids.current").read_text())
            most = (pids / "pids.max").read_text().strip()
            if int(events.get("max", "0")) > 0 or (most.isdigit()
                                                   and current >= int(most) - 1):
                _PIDS_HITS[sid] = True
    return False
