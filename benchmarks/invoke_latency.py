"""Cold TaskAgent invocations through the `clrk dev` ingress, with real workers and runsc.

Prints p50/p99 for a busybox agent and the Python word-count agent (image cached on
the worker, no warm pool), and the wall time of 50 concurrent invocations.
Run: .venv/bin/python benchmarks/invoke_latency.py [--n 30]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.conftest import DevServer, start_dev  # noqa: E402
from tests.images import Registry, build, busybox_recipe, word_count_image  # noqa: E402


def apply(dev: DevServer, name: str, image: str, args: list[str] | None = None) -> None:
    spec: dict[str, object] = {"image": image}
    if args:
        spec["args"] = args
    dev.kubectl("apply", "-f", "-", input=json.dumps({
        "apiVersion": "clrk.apoxy.dev/v1alpha1", "kind": "TaskAgent",
        "metadata": {"name": name}, "spec": {"template": {"spec": spec}}}))


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


async def measure(dev: DevServer, name: str, n: int) -> list[float]:
    out = []
    async with httpx.AsyncClient(timeout=120) as client:
        for _ in range(n + 2):
            t = time.perf_counter()
            r = await client.post(f"{dev.ingress}/", content=b'{"text":"a b c"}', headers={
                "X-Clrk-TaskAgent": f"default/{name}", "content-type": "application/json"})
            assert r.status_code == 200, r.text
            out.append((time.perf_counter() - t) * 1000)
    return out[2:]  # the first calls pull and unpack the image


async def concurrent(dev: DevServer, name: str, n: int) -> tuple[float, int, int]:
    """Wall time, successes, and 429s (one worker takes 32 at once; the rest are shed)."""
    async with httpx.AsyncClient(timeout=300) as client:
        t = time.perf_counter()
        rs = await asyncio.gather(*(client.post(f"{dev.ingress}/", content=b"{}", headers={
            "X-Clrk-TaskAgent": f"default/{name}", "content-type": "application/json"})
            for _ in range(n)))
        codes = [r.status_code for r in rs]
        assert set(codes) <= {200, 429}, codes
        return time.perf_counter() - t, codes.count(200), codes.count(429)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=30)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        registry = Registry(Path(tmp) / "registry")
        try:
            registry.push("bench/shell", "1", build(busybox_recipe(Entrypoint=["/bin/sh", "-c"])))
            registry.push("bench/word-count", "1", word_count_image())
            dev = start_dev(Path(tmp) / "clrk", "--insecure-registry", registry.host,
                            workers=1)
            try:
                while dev.kubectl("get", "wp", "default", "-o",
                                  "jsonpath={.status.readyReplicas}").stdout != "1":
                    time.sleep(0.2)
                apply(dev, "bb", f"{registry.host}/bench/shell:1", ["cat"])
                apply(dev, "wc", f"{registry.host}/bench/word-count:1")
                time.sleep(1)
                for label, name in (("cold busybox", "bb"), ("cold python word-count", "wc")):
                    ms = asyncio.run(measure(dev, name, args.n))
                    print(f"{label:<26} n={len(ms):<4} p50={statistics.median(ms):7.1f} ms  "
                          f"p99={pct(ms, 0.99):7.1f} ms")
                wall, ok, shed = asyncio.run(concurrent(dev, "bb", 50))
                print(f"{'50 concurrent busybox':<26} wall={wall * 1000:7.0f} ms  "
                      f"200={ok} 429={shed}")
            finally:
                dev.stop()
        finally:
            registry.stop()


if __name__ == "__main__":
    main()
