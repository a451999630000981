"""Host tasks per sandbox, per process and per thread inside it (ptrace platform).

The pids cgroup of a sandbox counts host tasks (threads): runsc itself, the gofer, the
sentry's threads and the ptrace stub processes the sentry forks, one per address space
inside, with one traced thread per sentry thread that ever ran it. An agent's
``resources.pids`` is in sandbox processes and threads; the worker converts it to the
host's ``pids.max`` with the model these figures give (``clrk.worker.sandbox.spec``).

Each case starts a sandbox without a pids limit, has the agent start N children or
threads that stay alive, and reads ``pids.current`` once it is steady plus ``pids.peak``
(the most the sandbox ever used, start-up included). Needs root (like the worker).
Run: .venv/bin/python benchmarks/sandbox_pids.py [--network] [--quick] [--only LABEL]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.images import Registry, build, busybox_recipe, python_base  # noqa: E402

from clrk.api.agents import AgentTemplate  # noqa: E402
from clrk.worker.agents.task import Networking, release, resolve, start  # noqa: E402
from clrk.worker.images.registry import RegistryClient  # noqa: E402
from clrk.worker.images.store import ImageStore  # noqa: E402
from clrk.worker.metadata import MetadataService  # noqa: E402
from clrk.worker.sandbox import cgroups  # noqa: E402
from clrk.worker.sandbox.network import Network  # noqa: E402
from clrk.worker.sandbox.runner import Runtime  # noqa: E402

UNLIMITED = 100_000  # resources.pids past any case here (1.6M host tasks: no limit)
# Busybox: N children that stay (sleeping, or spinning), then "ready".
SLEEPERS = "i=0; while [ $i -lt {n} ]; do sleep 1000 & i=$((i+1)); done; echo ready; sleep 1000"
SPINNERS = ("i=0; while [ $i -lt {n} ]; do yes > /dev/null & i=$((i+1)); done; echo ready; "
            "sleep 1000")
# Busybox: short-lived processes (a pipeline of three, as make -j or xargs -P would run
# them), N pipelines at a time, R rounds; then "ready".
CHURN = ("j=0; while [ $j -lt {r} ]; do i=0; while [ $i -lt {n} ]; do sh -c 'echo x | cat' "
         "> /dev/null & i=$((i+1)); done; wait; j=$((j+1)); done; echo ready; sleep 1000")
# Python: N threads blocked on an Event, waking every millisecond (a thread pool doing
# I/O), or computing in C without the GIL (zlib), then "ready".
THREADS = """
import os, sys, threading, time, zlib
n, mode = int(sys.argv[1]), sys.argv[2]
stop = threading.Event()
data = os.urandom(1 << 18)
def blocked(): stop.wait()
def waking():
    while not stop.wait(0.001): pass
def computing():
    while not stop.is_set(): zlib.compress(data, 1)
work = {"blocked": blocked, "waking": waking, "computing": computing}[mode]
ts = [threading.Thread(target=work) for _ in range(n)]
for t in ts: t.start()
print("ready", flush=True)
time.sleep(1000)
"""
# Python: a multiprocessing-style fan-out, N child interpreters that stay.
CHILDREN = """
import subprocess, sys, time
n = int(sys.argv[1])
ps = [subprocess.Popen([sys.executable, "-c", "import time; time.sleep(1000)"])
      for _ in range(n)]
print("ready", flush=True)
time.sleep(1000)
"""


@dataclass
class Reading:
    current: int
    peak: int
    kinds: Counter[str]  # host tasks by what they are


def _status(pid: str) -> dict[str, str]:
    return dict(line.split(":\t", 1) for line in
                Path(f"/proc/{pid}/status").read_text().splitlines() if ":\t" in line)


def read_tasks(sid: str) -> Reading:
    """pids.current and pids.peak, and the tasks by kind: runsc run, the gofer, the
    sentry's own threads, the stub processes and their threads."""
    group = cgroups.path("pids", sid)
    current = int((group / "pids.current").read_text())
    peak_file = group / "pids.peak"
    peak = int(peak_file.read_text()) if peak_file.exists() else -1
    kinds: Counter[str] = Counter()
    role: dict[str, str] = {}
    for pid in (group / "cgroup.procs").read_text().split():
        try:
            words = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"boot" in words:
            role[pid] = "sentry"
        elif b"gofer" in words:
            role[pid] = "gofer"
        elif b"run" in words:
            role[pid] = "runsc run"
        else:  # the stubs the sentry forks unmap everything but their code: no cmdline
            role[pid] = "stub"
    for tid in (group / "tasks").read_text().split():
        try:
            tgid = _status(tid)["Tgid"].strip()
        except (OSError, KeyError):
            continue
        kind = role.get(tgid, "other")
        kinds[f"{kind} threads" if kind == "stub" else kind] += 1
    kinds["stub processes"] = sum(1 for k in role.values() if k == "stub")
    return Reading(current, peak, kinds)


async def steady(sid: str, timeout: float = 20.0) -> Reading:
    """pids.current once four readings 0.25 s apart agree (or the last one)."""
    last: list[int] = []
    deadline = time.monotonic() + timeout
    reading = read_tasks(sid)
    while time.monotonic() < deadline:
        reading = read_tasks(sid)
        last = [*last[-3:], reading.current]
        if len(last) == 4 and len(set(last)) == 1:
            break
        await asyncio.sleep(0.25)
    return reading


async def measure(runtime: Runtime, images: ImageStore, networking: Networking | None,
                  image: str, argv: list[str], hold: float = 0) -> Reading:
    template = AgentTemplate.model_validate({"spec": {"image": image, "command": argv}})
    spec = dataclasses.replace(await resolve(images, template), pids=UNLIMITED)
    prepared = await start(runtime, spec, False, networking)
    sandbox = prepared.sandbox
    ready = asyncio.Event()
    stop = asyncio.Event()
    seen = bytearray()

    def on_stdout(data: bytes) -> None:
        seen.extend(data)
        if b"ready" in seen:
            ready.set()

    err = bytearray()
    finishing = asyncio.create_task(sandbox.finish(b"", 600, on_stdout, err.extend, stop))
    try:
        waiting = asyncio.create_task(ready.wait())
        await asyncio.wait([waiting, finishing], timeout=300,
                           return_when=asyncio.FIRST_COMPLETED)
        if not ready.is_set():
            waiting.cancel()
            raise RuntimeError(f"the agent never got ready: {bytes(err[-2000:])!r}")
        reading = await steady(sandbox.sid)
        if hold:  # what a longer run adds (stubs gain threads as the agent moves around)
            await asyncio.sleep(hold)
            reading = read_tasks(sandbox.sid)
    finally:
        stop.set()
        await finishing
        await release(prepared, networking)
    return reading


def row(label: str, n: int, r: Reading, base: Reading | None) -> str:
    extra = ""
    if base is not None and n:
        extra = (f"{(r.current - base.current) / n:6.1f} /each   "
                 f"{(r.peak - base.peak) / n:6.1f} /each")
    kinds = ", ".join(f"{k} {v}" for k, v in sorted(r.kinds.items()))
    return f"{label:<24} n={n:<4} current {r.current:5}  peak {r.peak:5}  {extra:<30} [{kinds}]"


async def series(runtime: Runtime, images: ImageStore, networking: Networking | None,
                 case: Case) -> None:
    base: Reading | None = None
    for n in case.counts:
        argv = [a.replace("{n}", str(n)).replace("{r}", str(case.rounds)) for a in case.argv]
        reading = await measure(runtime, images, networking, case.image, argv, case.hold)
        if n == 0:
            base = reading
        print(row(case.label, n, reading, base), flush=True)
        await runtime.drain()


@dataclass
class Case:
    label: str
    image: str  # busybox or python
    argv: list[str]  # {n}: the count, {r}: rounds
    counts: list[int]
    hold: float = 0  # seconds to let it run before the reading
    rounds: int = 0


def cases(quick: bool) -> list[Case]:
    procs = [0, 1, 2, 4, 8, 16, 32, 64]
    threads = [0, 1, 2, 4, 8, 16, 32, 64, 128]
    churn = [0, 1, 2, 4, 8, 16, 32]
    if quick:
        procs, threads, churn = [0, 8, 32], [0, 32, 128], [0, 8]
    sh = ["/bin/sh", "-c"]
    return [
        Case("busybox sleep children", "busybox", [*sh, SLEEPERS], procs),
        Case("busybox busy children", "busybox", [*sh, SPINNERS], procs),
        Case("busybox busy 30s", "busybox", [*sh, SPINNERS], [0, 16, 64], hold=30),
        Case("python child processes", "python", ["python3", "-c", CHILDREN, "{n}"], procs),
        Case("python blocked threads", "python",
             ["python3", "-c", THREADS, "{n}", "blocked"], threads),
        Case("python waking threads", "python",
             ["python3", "-c", THREADS, "{n}", "waking"], threads),
        Case("python computing threads", "python",
             ["python3", "-c", THREADS, "{n}", "computing"], threads),
        Case("busybox churn x20", "busybox", [*sh, CHURN], churn, rounds=20),
        Case("busybox churn x100", "busybox", [*sh, CHURN], [0, 1, 8, 16], rounds=100),
    ]


async def main(network: bool, quick: bool, only: str | None) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        registry = Registry(Path(tmp) / "registry")
        net: Network | None = None
        try:
            registry.push("bench/busybox", "1", build(busybox_recipe()))
            registry.push("bench/python", "1", python_base())
            runtime = Runtime(Path(tmp) / "sandboxes")
            images = ImageStore(Path(tmp) / "images", RegistryClient(insecure={registry.host}))
            image = {name: f"{registry.host}/bench/{name}:1" for name in ("busybox", "python")}
            for ref in image.values():
                await images.pull(ref)
            networking = None
            if network:
                net = Network(14, 9)
                await net.install()
                networking = Networking(net, MetadataService())
            print(f"runsc platform {runtime.platform}, network "
                  f"{'sandbox' if network else 'none'}; tasks in the sandbox's pids cgroup; "
                  "/each: more than n=0, per process or thread")
            for case in cases(quick):
                if only and only not in case.label:
                    continue
                await series(runtime, images, networking,
                             dataclasses.replace(case, image=image[case.image]))
        finally:
            if net is not None:
                await net.drain()
                await net.uninstall()
            registry.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--network", action="store_true",
                        help="Sandbox networking (a netns and veth) as the worker gives.")
    parser.add_argument("--quick", action="store_true", help="Fewer sizes.")
    parser.add_argument("--only", help="Only the cases whose label contains this.")
    a = parser.parse_args()
    asyncio.run(main(a.network, a.quick, a.only))
