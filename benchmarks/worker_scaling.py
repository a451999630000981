"""Invocation throughput and latency with 1, 2 and 4 worker processes on this host.

For each worker count, `clrk dev --workers N` with real runsc; the Python word-count
agent, cold (image cached, no warm pool) and warm (warmPoolSize per worker), driven by
--clients closed-loop callers through the ingress for --n invocations. Prints
invocations per second, p50 and p99 latency, and how the executions spread over the
workers (from each Invocation's status.worker).
Run: .venv/bin/python benchmarks/worker_scaling.py [--workers 1,2,4] [--n 80] [--clients 8]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.conftest import DevServer, start_dev  # noqa: E402
from tests.images import Registry, word_count_image  # noqa: E402

from benchmarks.figures import pct  # noqa: E402


def apply(dev: DevServer, name: str, image: str, **extra: object) -> None:
    dev.kubectl("apply", "-f", "-", input=json.dumps({
        "apiVersion": "clrk.apoxy.dev/v1alpha1", "kind": "TaskAgent",
        "metadata": {"name": name},
        "spec": {"template": {"spec": {"image": image}}, **extra}}))



async def drive(dev: DevServer, name: str, n: int, clients: int
                ) -> tuple[float, list[float], list[str]]:
    """Wall seconds, latencies (ms) and invocation names of n calls by closed-loop
    callers."""
    todo = list(range(n))
    latencies: list[float] = []
    invocations: list[str] = []

    async def caller(client: httpx.AsyncClient) -> None:
        while todo:
            todo.pop()
            t = time.perf_counter()
            r = await client.post(f"{dev.ingress}/", content=b'{"text":"a b c"}', headers={
                "X-Clrk-TaskAgent": f"default/{name}", "content-type": "application/json"})
            assert r.status_code == 200, (r.status_code, r.text)
            latencies.append((time.perf_counter() - t) * 1000)
            invocations.append(r.headers["x-clrk-invocation"])

    async with httpx.AsyncClient(timeout=300) as client:
        start = time.perf_counter()
        await asyncio.gather(*(caller(client) for _ in range(clients)))
        return time.perf_counter() - start, latencies, invocations


def spread(dev: DevServer, names: list[str]) -> dict[str, int]:
    items = json.loads(dev.kubectl("get", "inv", "-o", "json", timeout=120).stdout)["items"]
    wanted = set(names)
    return dict(Counter(i["status"].get("worker", "?") for i in items
                        if i["metadata"]["name"] in wanted))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workers", default="1,2,4")
    parser.add_argument("--n", type=int, default=80)
    parser.add_argument("--clients", type=int, default=8)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        registry = Registry(Path(tmp) / "registry")
        try:
            registry.push("bench/word-count", "1", word_count_image())
            image = f"{registry.host}/bench/word-count:1"
            for count in (int(w) for w in args.workers.split(",")):
                dev = start_dev(Path(tmp) / f"clrk-{count}", "--insecure-registry",
                                registry.host, workers=count)
                try:
                    while dev.kubectl("get", "wp", "default", "-o",
                                      "jsonpath={.status.readyReplicas}").stdout != str(count):
                        time.sleep(0.2)
                    apply(dev, "cold", image)
                    apply(dev, "warm", image, warmPoolSize=args.clients)
                    asyncio.run(drive(dev, "cold", 2 * count, 1))  # every worker pulls
                    time.sleep(3)  # the warm pools fill; heartbeats report the images
                    for mode in ("cold", "warm"):
                        wall, ms, names = asyncio.run(drive(dev, mode, args.n, args.clients))
                        per_worker = sorted(spread(dev, names).values())
                        print(f"workers={count} {mode:<4} n={len(ms)} clients={args.clients} "
                              f"{len(ms) / wall:6.1f} inv/s  "
                              f"p50={statistics.median(ms):7.0f} ms  "
                              f"p99={pct(ms, 0.99):7.0f} ms  spread={per_worker}", flush=True)
                finally:
                    dev.stop()
        finally:
            registry.stop()


if __name__ == "__main__":
    main()
