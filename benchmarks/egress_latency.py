"""Added latency and throughput of the egress data plane for plain TCP (L4, allow-all),
measured with `hey` from a network namespace wired like a sandbox's: first straight to
the upstream, then with the namespace's TCP redirected to the node-local Envoy.
Needs root. Run: .venv/bin/python benchmarks/egress_latency.py [--n 20000] [--c 10]
"""

from __future__ import annotations

import argparse
import asyncio
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.kube_cluster import free_port  # noqa: E402
from tests.netns import veth_netns  # noqa: E402

from clrk.egress.envoy.listeners import GatewayListener, base_clusters, listener  # noqa: E402
from clrk.egress.envoy.supervisor import EnvoySupervisor  # noqa: E402

HOST_IP, NS_IP = "10.215.0.1", "10.215.0.2"
RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok"


class Upstream(asyncio.Protocol):
    """A minimal keep-alive HTTP/1.1 server: one answer per request head."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.buf = b""

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while b"\r\n\r\n" in self.buf:
            _, self.buf = self.buf.split(b"\r\n\r\n", 1)
            self.transport.write(RESPONSE)  # type: ignore[attr-defined]


def hey(ns: str, url: str, n: int, c: int) -> tuple[float, float, float]:
    out = subprocess.run(["ip", "netns", "exec", ns, "hey", "-n", str(n), "-c", str(c), url],
                         capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = float(re.search(r"50% in ([\d.]+) secs", out).group(1))  # type: ignore[union-attr]
    p99 = float(re.search(r"99% in ([\d.]+) secs", out).group(1))  # type: ignore[union-attr]
    return rps, p50 * 1000, p99 * 1000


async def main(n: int, c: int) -> None:
    port, envoy_port = free_port(), free_port()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Upstream, "0.0.0.0", port)
    with tempfile.TemporaryDirectory() as tmp, veth_netns("bench", HOST_IP, NS_IP) as (
            ns, host_if):
        rule = ["PREROUTING", "-i", host_if, "-p", "tcp", "-j", "REDIRECT", "--to-ports",
                str(envoy_port)]
        sup = EnvoySupervisor(Path(tmp) / "envoy", free_port(), "bench")
        try:
            await sup.start()
            await sup.ready()
            gw = GatewayListener("bench", "gw", envoy_port, "allow-all", Path(tmp) / "a.log")
            sup.write([listener(gw)], base_clusters())
            await asyncio.sleep(1)
            url = f"http://{HOST_IP}:{port}/"
            direct = await asyncio.to_thread(hey, ns, url, n, c)
            subprocess.run(["iptables", "-t", "nat", "-A", *rule], check=True)
            await asyncio.sleep(0.5)
            via = await asyncio.to_thread(hey, ns, url, n, c)
            print(f"{'direct':<22} {direct[0]:8.0f} rps  p50 {direct[1]:6.2f} ms  "
                  f"p99 {direct[2]:6.2f} ms")
            print(f"{'through Envoy (L4)':<22} {via[0]:8.0f} rps  p50 {via[1]:6.2f} ms  "
                  f"p99 {via[2]:6.2f} ms")
            print(f"added: p50 {via[1] - direct[1]:+.2f} ms, p99 {via[2] - direct[2]:+.2f} ms "
                  f"(hey -n {n} -c {c}, keep-alive, one Envoy worker thread)")
        finally:
            subprocess.run(["iptables", "-t", "nat", "-D", *rule], capture_output=True)
            await sup.stop()
            server.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=20000)
    parser.add_argument("--c", type=int, default=10)
    a = parser.parse_args()
    asyncio.run(main(a.n, a.c))
