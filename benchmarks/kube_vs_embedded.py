"""1,000 TaskAgents through the real kube-apiserver (aggregated clrk API) and through the
embedded API of `clrk dev`: create throughput, list and watch latencies side by side.

Through kube-apiserver every request is proxied by kube-aggregator to the clrk API server,
which authenticates the front-proxy certificate and asks kube-apiserver for a
SubjectAccessReview (cached 10 s); in `clrk dev` the same API server checks one token.
Run: .venv/bin/python benchmarks/kube_vs_embedded.py [--n 1000] [--threads 8]
(never while a test suite with a cluster or workers runs: the addresses collide).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
from lightkube import KubeConfig
from lightkube.config.client_adapter import Client as httpx_client
from lightkube.config.client_adapter import ConnectionParams

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.clrk_on_kube import install_and_run  # noqa: E402
from tests.conftest import start_dev  # noqa: E402
from tests.kube_cluster import build_binaries, start_cluster, test_addresses  # noqa: E402

from benchmarks.figures import pct  # noqa: E402

API = "/apis/clrk.apoxy.dev/v1alpha1"



def client(kubeconfig: Path) -> httpx.Client:
    config = KubeConfig.from_file(str(kubeconfig)).get()
    assert config is not None
    return httpx_client(config, ConnectionParams(timeout=httpx.Timeout(60)))


def agent(name: str) -> bytes:
    return json.dumps({"apiVersion": "clrk.apoxy.dev/v1alpha1", "kind": "TaskAgent",
                       "metadata": {"name": name},
                       "spec": {"template": {"spec": {"image": "registry.test/a:1"}}}
                       }).encode()


def run(label: str, kubeconfig: Path, ns: str, n: int, threads: int) -> dict[str, float]:
    local = threading.local()

    def create(i: int) -> float:
        if not hasattr(local, "c"):
            local.c = client(kubeconfig)
        start = time.perf_counter()
        r = local.c.post(f"{API}/namespaces/{ns}/taskagents", content=agent(f"a-{i:05d}"),
                         headers={"Content-Type": "application/json"})
        r.raise_for_status()
        return time.perf_counter() - start

    start = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        creates = list(pool.map(create, range(n)))
    wall = time.perf_counter() - start
    with client(kubeconfig) as c:
        lists = []
        for _ in range(10):
            t = time.perf_counter()
            items = c.get(f"{API}/namespaces/{ns}/taskagents").raise_for_status().json()
            lists.append(time.perf_counter() - t)
        assert len(items["items"]) == n
        # Watch latency: from a create's request to its ADDED event on an open watch.
        rv = items["metadata"]["resourceVersion"]
        events: dict[str, float] = {}
        opened = threading.Event()

        def watch() -> None:
            with client(kubeconfig) as w, w.stream(
                    "GET", f"{API}/namespaces/{ns}/taskagents",
                    params={"watch": "true", "resourceVersion": rv},
                    timeout=httpx.Timeout(60, read=None)) as s:
                opened.set()
                for line in s.iter_lines():
                    ev = json.loads(line)
                    if ev["type"] == "ADDED":
                        events[ev["object"]["metadata"]["name"]] = time.perf_counter()
                        if len(events) >= 50:
                            return

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        opened.wait(30)
        time.sleep(0.5)
        sent: dict[str, float] = {}
        for i in range(50):
            name = f"w-{i:03d}"
            sent[name] = time.perf_counter()
            c.post(f"{API}/namespaces/{ns}/taskagents", content=agent(name),
                   headers={"Content-Type": "application/json"}).raise_for_status()
            time.sleep(0.02)
        watcher.join(60)
        watch_ms = [1000 * (events[k] - sent[k]) for k in sent if k in events]
    out = {"create_per_s": n / wall, "create_p50_ms": 1000 * pct(creates, 0.5),
           "create_p99_ms": 1000 * pct(creates, 0.99),
           "list_p50_ms": 1000 * statistics.median(lists),
           "list_max_ms": 1000 * max(lists),
           "watch_p50_ms": pct(watch_ms, 0.5), "watch_p99_ms": pct(watch_ms, 0.99)}
    print(f"{label:<22} creates {out['create_per_s']:7.0f}/s (p50 {out['create_p50_ms']:5.1f} "
          f"ms, p99 {out['create_p99_ms']:6.1f} ms)  list of {n}: p50 "
          f"{out['list_p50_ms']:6.1f} ms (max {out['list_max_ms']:6.1f})  watch event p50 "
          f"{out['watch_p50_ms']:5.1f} ms, p99 {out['watch_p99_ms']:5.1f} ms "
          f"({len(watch_ms)}/50 seen)", flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=8)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        dev = start_dev(Path(tmp) / "dev")
        try:
            run("embedded (clrk dev)", dev.kubeconfig, "default", args.n, args.threads)
        finally:
            dev.stop()
        binaries, _ = build_binaries()
        with test_addresses():
            cluster = start_cluster(Path(tmp) / "kube", binaries)
            try:
                manager, _ = install_and_run(cluster, Path(tmp) / "clrk")
                try:
                    run("through kube-apiserver", cluster.kubeconfig(), "default", args.n,
                        args.threads)
                finally:
                    manager.stop()
            finally:
                cluster.stop()


if __name__ == "__main__":
    main()
