"""TaskAgent invocations through the `clrk dev` ingress, with real workers and runsc.

Prints p50/p99 for cold invocations of a busybox agent and the Python word-count agent
(image cached on the worker, no warm pool; one call every --gap seconds, so a call's
latency is its own and not the previous call's background teardown, which the
back-to-back busybox line shows), warm invocations of the word-count agent
(warmPoolSize 2, stdin mode, one call every --gap seconds so the pool refills between
calls), and the wall time of 50 concurrent invocations.
Run: .venv/bin/python benchmarks/invoke_latency.py [--n 30] [--gap 0.6]
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

from benchmarks.figures import pct  # noqa: E402


def apply(dev: DevServer, name: str, image: str, args: list[str] | None = None,
          **extra: object) -> None:
    spec: dict[str, object] = {"image": image}
    if args:
        spec["args"] = args
    dev.kubectl("apply", "-f", "-", input=json.dumps({
        "apiVersion": "clrk.apoxy.dev/v1alpha1", "kind": "TaskAgent",
        "metadata": {"name": name}, "spec": {"template": {"spec": spec}, **extra}}))



async def measure(dev: DevServer, name: str, n: int, gap: float = 0.0,
                  want_warm: bool | None = None) -> list[float]:
    """Latencies of n calls (after two unmeasured ones); with ``want_warm``, only the
    calls whose Invocation says they did (or did not) start warm count."""
    out = []
    async with httpx.AsyncClient(timeout=120) as client:
        for i in range(n + 2):
            if gap:
                await asyncio.sleep(gap)
            t = time.perf_counter()
            r = await client.post(f"{dev.ingress}/", content=b'{"text":"a b c"}', headers={
                "X-Clrk-TaskAgent": f"default/{name}", "content-type": "application/json"})
            ms = (time.perf_counter() - t) * 1000
            assert r.status_code == 200, r.text
            if i < 2:
                continue  # the first calls pull and unpack the image
            if want_warm is not None:
                inv = json.loads(dev.kubectl("get", "inv", r.headers["x-clrk-invocation"],
                                             "-o", "json").stdout)
                if bool(inv["status"].get("warmStart")) != want_warm:
                    continue
            out.append(ms)
    return out


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
    parser.add_argument("--gap", type=float, default=0.6)
    parser.add_argument("--only", default="", help="comma-separated labels to run, e.g. "
                        "'warm python word-count' (default: all)")
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
                apply(dev, "wc-warm", f"{registry.host}/bench/word-count:1", warmPoolSize=2)
                time.sleep(1)
                for label, name, gap, warm in (
                        ("cold busybox", "bb", args.gap, None),
                        ("cold python word-count", "wc", args.gap, None),
                        ("cold busybox back-to-back", "bb", 0.0, None),
                        ("warm python word-count", "wc-warm", args.gap, True)):
                    if args.only and label not in args.only.split(","):
                        continue
                    ms = asyncio.run(measure(dev, name, args.n, gap, warm))
                    print(f"{label:<26} n={len(ms):<4} p50={statistics.median(ms):7.1f} ms  "
                          f"p99={pct(ms, 0.99):7.1f} ms", flush=True)
                if args.only and "50 concurrent busybox" not in args.only.split(","):
                    return
                wall, ok, shed = asyncio.run(concurrent(dev, "bb", 50))
                print(f"{'50 concurrent busybox':<26} wall={wall * 1000:7.0f} ms  "
                      f"200={ok} 429={shed}")
            finally:
                dev.stop()
        finally:
            registry.stop()


if __name__ == "__main__":
    main()
