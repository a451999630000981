"""Memory per idle sandbox: N warm-pool-style sandboxes (netns + veth + runsc, the agent
blocked on stdin), measured as the drop in MemAvailable and as the PSS of the
processes that make them up. Needs root (like the worker).
Run: .venv/bin/python benchmarks/idle_sandboxes.py [--n 100] [--image busybox|python]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.images import Registry, build, busybox_recipe, python_base  # noqa: E402

from clrk.api.agents import AgentTemplate  # noqa: E402
from clrk.worker.agents.task import Networking, discard, prepare  # noqa: E402
from clrk.worker.images.registry import RegistryClient  # noqa: E402
from clrk.worker.images.store import ImageStore  # noqa: E402
from clrk.worker.metadata import MetadataService  # noqa: E402
from clrk.worker.sandbox.network import Network  # noqa: E402
from clrk.worker.sandbox.runner import Runtime  # noqa: E402


def mem_available() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no MemAvailable")


def pss_of(sids: set[str]) -> int:
    """PSS of every process whose command line names one of the sandboxes (runsc's
    sandbox, gofer and the ptrace stubs it forks)."""
    total = 0
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmd = (proc / "cmdline").read_bytes().decode(errors="replace")
            if not any(s in cmd for s in sids):
                continue
            for line in (proc / "smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            continue
    return total


async def main(n: int, kind: str, settle: float | None) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        registry = Registry(Path(tmp) / "registry")
        try:
            if kind == "python":
                registry.push("bench/agent", "1", python_base())
                args = ["python3", "-c", "import sys; sys.stdin.read()"]
            else:
                registry.push("bench/agent", "1", build(busybox_recipe()))
                args = ["cat"]
            runtime = Runtime(Path(tmp) / "sandboxes")
            images = ImageStore(Path(tmp) / "images", RegistryClient(insecure={registry.host}))
            network = Network(14, 9)
            await network.install()
            networking = Networking(network, MetadataService())
            template = AgentTemplate.model_validate(
                {"spec": {"image": f"{registry.host}/bench/agent:1", "command": args}})
            await images.pull(template.spec.image)
            try:
                before = mem_available()
                t = time.perf_counter()
                started = []
                for _ in range(n):
                    started.append(await prepare(runtime, images, template, False, networking))
                took = time.perf_counter() - t
                # Let every agent finish booting (they start in the background) and idle.
                await asyncio.sleep(settle if settle is not None else max(3.0, 0.3 * n))
                alive = sum(1 for p in started if p.sandbox.alive)
                used = before - mem_available()
                pss = pss_of({p.sandbox.sid for p in started})
                per_avail = used / n / 2**20
                per_pss = pss / n / 2**20
                print(f"{kind}: {n} idle sandboxes ({alive} alive), started in {took:.1f} s")
                print(f"  MemAvailable drop: {used / 2**20:8.0f} MiB = {per_avail:6.1f} MiB each"
                      f" -> {int(24 * 1024 / per_avail)} in 24 GiB")
                print(f"  PSS of their processes: {pss / 2**20:8.0f} MiB = {per_pss:6.1f} MiB "
                      f"each -> {int(24 * 1024 / per_pss)} in 24 GiB")
            finally:
                await asyncio.gather(*(discard(p, networking) for p in started))
                await runtime.drain()
                await network.drain()
                await network.uninstall()
        finally:
            registry.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--image", choices=["busybox", "python"], default="busybox")
    parser.add_argument("--settle", type=float, default=None,
                        help="Seconds to wait before measuring (default 0.3 s per sandbox).")
    a = parser.parse_args()
    asyncio.run(main(a.n, a.image, a.settle))
