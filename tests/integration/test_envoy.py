"""The node-local Envoy, real: generated listeners, transparent capture from a network
namespace (iptables REDIRECT, as the worker wires sandboxes), default policies, live
configuration changes that keep open connections, and restarts after a crash."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import socketserver
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from clrk.egress.envoy.access_logs import AccessLogs
from clrk.egress.envoy.clusters import endpoint_cluster
from clrk.egress.envoy.listeners import GatewayListener, base_clusters, listener
from clrk.egress.envoy.supervisor import EnvoySupervisor
from tests.kube_cluster import free_port
from tests.netns import veth_netns

HOST_IP, NS_IP = "10.214.0.1", "10.214.0.2"


class Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        while data := self.request.recv(4096):
            self.request.sendall(b"echo:" + data)


@pytest.fixture
def echo() -> Iterator[int]:
    server = socketserver.ThreadingTCPServer(("0.0.0.0", 0), Echo)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield int(server.server_address[1])
    server.shutdown()
    server.server_close()


@pytest.fixture
def netns() -> Iterator[tuple[str, str]]:
    """A namespace like a sandbox's: a veth to the host, default route via the host."""
    with veth_netns("test", HOST_IP, NS_IP) as pair:
        yield pair


@pytest.fixture
async def envoy(tmp_path: Path, netns: tuple[str, str]
                ) -> AsyncIterator[tuple[EnvoySupervisor, int]]:
    port = free_port()
    rule = ["PREROUTING", "-i", netns[1], "-p", "tcp", "-j", "REDIRECT", "--to-ports",
            str(port)]
    subprocess.run(["iptables", "-t", "nat", "-A", *rule], check=True)
    sup = EnvoySupervisor(tmp_path / "envoy", free_port(), "test-worker")
    try:
        await sup.start()
        await sup.ready()
        yield sup, port
    finally:
        await sup.stop()
        subprocess.run(["iptables", "-t", "nat", "-D", *rule], capture_output=True)


CLIENT = """
import socket, sys, time
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3)
for i in range(int(sys.argv[3])):
    try:
        s.sendall(b"ping%d" % i)
        print(s.recv(100).decode() or "closed", flush=True)
    except OSError as e:
        print("error", e, flush=True)
    time.sleep(float(sys.argv[4]))
"""


async def from_ns(ns: str, port: int, times: int = 1, pause: float = 0.0
                  ) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        "ip", "netns", "exec", ns, sys.executable, "-c", CLIENT, HOST_IP, str(port),
        str(times), str(pause), stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT)


async def once(ns: str, port: int) -> str:
    proc = await from_ns(ns, port)
    out, _ = await proc.communicate()
    return out.decode().strip()


async def configure(sup: EnvoySupervisor, port: int, policy: str) -> Path:
    """Once Envoy serves it (its listeners follow its clusters)."""
    gw = GatewayListener("default", "egw", port, policy, sup.config_dir / "access.log")
    sup.write([listener(gw)], base_clusters())
    assert await sup.loaded(30)
    return gw.access_log


async def until(pred: object, timeout: float = 10.0) -> None:
    """A change applies in milliseconds (Envoy watches the files); the generous bound
    keeps a loaded CI machine from failing on time, which tests must not measure."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await pred():  # type: ignore[operator]
        assert loop.time() < deadline, f"not applied within {timeout:g} s"
        await asyncio.sleep(0.05)


async def test_default_policies_live_changes_and_restarts(
        envoy: tuple[EnvoySupervisor, int], netns: tuple[str, str], echo: int) -> None:
    sup, port = envoy
    ns = netns[0]
    log = await configure(sup, port, "deny-all")

    async def denied() -> bool:
        return not (await once(ns, echo)).startswith("echo:")

    async def allowed() -> bool:
        return (await once(ns, echo)) == "echo:ping0"

    await until(denied)
    # allow-all: the connection reaches where the sandbox dialled, through Envoy.
    await configure(sup, port, "allow-all")
    await until(allowed)
    # A connection open across a change keeps working; new ones follow the new policy.
    long = await from_ns(ns, echo, times=8, pause=0.25)
    await asyncio.sleep(0.6)
    await configure(sup, port, "deny-all")
    await until(denied)
    out, _ = await long.communicate()
    assert out.decode().split() == [f"echo:ping{i}" for i in range(8)]
    # Every connection is in the access log (Envoy flushes it about once a second).
    async def logged() -> bool:
        entries = [json.loads(line) for line in log.read_text().splitlines()] \
            if log.exists() else []
        return any(e["source"].startswith(NS_IP) and e["cluster"] == "clrk_original_dst"
                   and e["destination"] == f"{HOST_IP}:{echo}" for e in entries) and any(
            e["cluster"] == "clrk_deny" for e in entries)
    await until(logged)
    # Killed, Envoy comes back with the same configuration.
    assert sup.proc is not None
    sup.proc.send_signal(signal.SIGKILL)
    await configure(sup, port, "allow-all")
    await until(lambda: _restarted(sup), timeout=20)
    await sup.ready()
    await until(allowed)


async def _restarted(sup: EnvoySupervisor) -> bool:
    return sup.restarts >= 1 and sup.proc is not None and sup.proc.returncode is None


async def test_a_silent_resolver_does_not_hold_up_a_restart(
        envoy: tuple[EnvoySupervisor, int], netns: tuple[str, str], echo: int) -> None:
    """After a restart Envoy has every gateway's clusters at once. A hostname cluster
    whose lookup never ends (here: a resolver on loopback that reads and never answers)
    must not keep the listeners down until the lookup times out: they serve while it is
    still pending."""
    sup, port = envoy
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind(("127.0.0.1", 0))
    silent.setblocking(False)
    try:
        slow = endpoint_cluster("slow", "never-answered.test", 443, typed_dns_resolver_config={
            "name": "envoy.network.dns_resolver.cares",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.network.dns_resolver.cares."
                         "v3.CaresDnsResolverConfig",
                "resolvers": [{"socket_address": {"address": "127.0.0.1", "protocol": "UDP",
                                                  "port_value": silent.getsockname()[1]}}]}})
        assert slow["type"] == "LOGICAL_DNS" and slow["wait_for_warm_on_init"] is False
        gw = GatewayListener("default", "egw", port, "allow-all", sup.config_dir / "a.log")
        sup.write([listener(gw)], [*base_clusters(), slow])
        assert sup.proc is not None
        sup.proc.send_signal(signal.SIGKILL)
        await until(lambda: _restarted(sup), timeout=20)

        async def allowed() -> bool:
            return (await once(netns[0], echo)) == "echo:ping0"

        await until(allowed, timeout=30)
        async with httpx.AsyncClient() as client:
            stats = (await client.get(f"{sup.admin_url}/stats?filter=cluster\\.slow\\.update_"
                                      )).text
        ended = {k: int(v) for k, v in (line.split(": ") for line in stats.splitlines())}
        assert ended["cluster.slow.update_success"] == ended["cluster.slow.update_failure"] \
            == 0, stats  # the lookup was still pending while the listener served
        assert silent.recv(512)  # and it had gone to the silent resolver, nowhere else
    finally:
        silent.close()


async def test_loaded_reports_the_written_versions(
        envoy: tuple[EnvoySupervisor, int], netns: tuple[str, str], echo: int) -> None:
    """The worker waits for the chain of a new wildcard name by the versions Envoy reports
    (not for a fixed time): True once they are served, False for versions never written."""
    sup, port = envoy
    gw = GatewayListener("default", "egw", port, "allow-all", sup.config_dir / "access.log")
    sup.write([listener(gw)], base_clusters())
    assert await sup.loaded(10)
    assert (await once(netns[0], echo)) == "echo:ping0"  # served as soon as reported
    sup.written = ("1", "2")  # versions Envoy never saw
    assert not await sup.loaded(0.3)


async def test_listeners_wait_for_the_clusters_they_name(
        envoy: tuple[EnvoySupervisor, int], netns: tuple[str, str], echo: int,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A route must not reach Envoy before its cluster (it would answer 503, "cluster
    not found"): the listeners are written only once Envoy reports the clusters. Here
    Envoy is paused, so it cannot report them: the listeners wait, the clusters do not.
    Two writes while it is paused: the listeners follow the second's clusters (with no
    fallback after a while to hide it if they waited for the first's)."""
    monkeypatch.setattr("clrk.egress.envoy.supervisor.LISTENERS_WAIT", 3600.0)
    sup, port = envoy
    gw = GatewayListener("default", "egw", port, "allow-all", sup.config_dir / "access.log")
    lds = sup.config_dir / "lds.json"
    before = json.loads(lds.read_text())["version_info"]
    assert sup.proc is not None
    sup.proc.send_signal(signal.SIGSTOP)
    try:
        sup.write([], [*base_clusters(), endpoint_cluster("sooner", "127.0.0.1", echo)])
        await asyncio.sleep(0.2)
        slow = endpoint_cluster("later", "127.0.0.1", echo)
        sup.write([listener(gw)], [*base_clusters(), slow])
        await asyncio.sleep(0.3)
        cds = json.loads((sup.config_dir / "cds.json").read_text())
        assert "later" in {c["name"] for c in cds["resources"]}
        assert json.loads(lds.read_text())["version_info"] == before
    finally:
        sup.proc.send_signal(signal.SIGCONT)
    assert await sup.loaded(20)
    assert json.loads(lds.read_text())["version_info"] == sup.written[1] != before
    assert (await once(netns[0], echo)) == "echo:ping0"


async def test_access_logs_are_taken_once_rotated_and_resumed(
        envoy: tuple[EnvoySupervisor, int], netns: tuple[str, str], echo: int,
        tmp_path: Path) -> None:
    """Each connection's line is taken exactly once: while the log is rotated (renamed,
    Envoy reopens it, the old file is read to its end and removed) and by a reader
    that resumes from the offsets a previous one kept."""
    sup, port = envoy
    ns = netns[0]
    log = await configure(sup, port, "allow-all")
    offsets = tmp_path / "offsets.json"
    taken: list[str] = []

    async def take(logs: AccessLogs) -> None:
        chunks = logs.pending(log)
        taken.extend(json.loads(line)["source"]
                     for c in chunks for line in c.data.splitlines())
        logs.taken(chunks)
        await logs.rotate(log)

    async def connect(n: int) -> None:
        for _ in range(n):
            assert await once(ns, echo) == "echo:ping0"

    reopened: list[bool] = []

    async def reopen() -> None:
        reopened.append(True)
        await sup.reopen_logs()

    logs = AccessLogs(offsets, reopen, rotate_bytes=1)
    await connect(3)

    async def all_taken(n: int) -> bool:
        await take(logs)
        return len(taken) >= n

    await until(lambda: all_taken(3))
    # Rotated: more than rotate_bytes were taken (the rotated file itself may be gone
    # already, once read to its end and settled).
    assert reopened
    await connect(2)  # these land in the reopened log (or the old one's end)
    await until(lambda: all_taken(5))
    # A new reader (a restarted worker) takes only what the old one had not.
    logs = AccessLogs(offsets, reopen, rotate_bytes=1)
    await connect(2)
    await until(lambda: all_taken(7))

    async def old_removed() -> bool:
        await take(logs)
        return not Path(f"{log}.1").exists()

    await until(old_removed, timeout=30)  # once it has been quiet for a while
    assert len(taken) == 7 and all(s.startswith(NS_IP) for s in taken), taken
