"""A sandbox's cgroup limits (cgroup v1: memory without swap, CPU quota, pids), made by
the worker rather than by runsc.

The pids limit is in host tasks (spec.host_pids converts an agent's resources.pids).
The parent group of every sandbox on the host is capped too, at three quarters of what
the kernel allows (pid_max, threads-max): one fork bomb ends at its own sandbox's limit,
and several at once cannot take the pids the host, and the worker outside the group,
need to fork.

runsc's own cgroup setup costs ~35 ms of every sandbox start on this machine; writing a
few files costs well under one. runsc then runs with ``--ignore-cgroups`` inside the
group its launching shell joined, and the gofer and sandbox processes it forks inherit
the group. On a host without the v1 controllers runsc keeps doing it itself.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
from pathlib import Path

ROOT = Path("/sys/fs/cgroup")
PARENT = "clrk"
CPU_PERIOD = 100_000
CONTROLLERS = ("memory", "cpu", "pids")
KERNEL_LIMITS = (Path("/proc/sys/kernel/pid_max"), Path("/proc/sys/kernel/threads-max"))
PARENT_PIDS_SHARE = 0.75  # of the kernel's limit, for all the sandboxes of the host


def available() -> bool:
    return all((ROOT / c / "cgroup.procs").exists() for c in CONTROLLERS)


def path(controller: str, sid: str) -> Path:
    return ROOT / controller / PARENT / sid


def create(sid: str, memory: int, cpu: float, pids: int) -> list[Path]:
    """The sandbox's groups with their limits; returns the files a process writes its pid
    to in order to join them."""
    settings = {
        "memory": [("memory.limit_in_bytes", memory), ("memory.memsw.limit_in_bytes", memory)],
        "cpu": [("cpu.cfs_period_us", CPU_PERIOD),
                ("cpu.cfs_quota_us", max(1000, int(cpu * CPU_PERIOD)))],
        "pids": [("pids.max", pids)],
    }
    procs = []
    try:
        _cap_parent()
        for controller, values in settings.items():
            group = path(controller, sid)
            group.mkdir(parents=True, exist_ok=True)
            for name, value in values:
                if (group / name).exists():  # memsw only with swap accounting
                    (group / name).write_text(str(value))
            procs.append(group / "cgroup.procs")
    except BaseException:
        remove(sid)
        raise
    return procs


def parent_pids_limit() -> int:
    return int(min(int(p.read_text()) for p in KERNEL_LIMITS) * PARENT_PIDS_SHARE)


def _cap_parent() -> None:
    """Cap the sandboxes' parent pids group, unless someone already chose a limit."""
    group = ROOT / "pids" / PARENT
    group.mkdir(parents=True, exist_ok=True)
    limit = group / "pids.max"
    if limit.read_text().strip() == "max":
        limit.write_text(str(parent_pids_limit()))


def join_script(procs: list[Path]) -> str:
    """Shell that moves itself into the groups (before it execs runsc)."""
    joins = " && ".join(f"echo $$ > {shlex.quote(str(p))}" for p in procs)
    return f"{{ {joins}; }} || {{ echo 'clrk: cannot join the sandbox cgroups' >&2; exit 125; }}"


def kill(sid: str) -> None:
    """SIGKILL whatever is still in the sandbox's groups: only its own processes (runsc,
    gofer, sentry, and what they forked) can be there, and a group with members cannot
    be removed."""
    for controller in CONTROLLERS:
        with contextlib.suppress(OSError, ValueError):
            for pid in (path(controller, sid) / "cgroup.procs").read_text().split():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid), signal.SIGKILL)


def remove(sid: str) -> bool:
    """Remove the sandbox's groups in every controller; False while one is still busy
    (its processes are still exiting)."""
    gone = True
    for controller in ROOT.iterdir() if ROOT.exists() else []:
        group = controller / PARENT / sid
        if group.is_dir():
            for child in sorted(group.rglob("*"), reverse=True):
                if child.is_dir():
                    with contextlib.suppress(OSError):
                        child.rmdir()
            try:
                group.rmdir()
            except OSError:
                gone = False
    return gone
