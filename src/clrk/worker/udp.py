"""The worker's UDP relay: every non-DNS datagram from a sandbox that has a gateway is
redirected here (iptables REDIRECT), its original destination read back from the
kernel's connection tracking, and the flow relayed or refused as the gateway's policy
says (``defaultPolicy``, EgressL4Routes with ``protocol: UDP``). Replies go back
through the same socket; conntrack restores their source. Each flow is recorded when
it ends (idle for a minute) or when it is refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger("clrk.worker.udp")
CONNTRACK = Path("/proc/net/nf_conntrack")
IDLE = 60.0
MAX_FLOWS = 4096

# (sandbox address, its egress port or None, destination address, destination port)
#   -> (target or None, deciding route, refusal reason)
Verdict = Callable[[str, str, int], tuple[tuple[str, int] | None, str, str]]


def original_destination(source: tuple[str, int], relay_port: int,
                         table: Path = CONNTRACK) -> tuple[str, int] | None:
    """Where a redirected datagram from ``source`` was going, from conntrack."""
    want_src, want_sport = f"src={source[0]}", f"sport={source[1]}"
    with contextlib.suppress(OSError), table.open() as f:
        for line in f:
            if " udp " not in line or want_src not in line:
                continue
            fields = [t.split("=", 1) for t in line.split() if "=" in t]
            keys = [k for k, _ in fields]
            if keys.count("src") < 2:
                continue
            first, second = keys.index("src"), keys.index("src", keys.index("src") + 1)
            orig = dict(fields[first:second])
            reply = dict(fields[second:])
            if orig.get("src") == source[0] and f"sport={orig.get('sport')}" == want_sport \
                    and reply.get("sport") == str(relay_port):
                return orig["dst"], int(orig["dport"])
    return None


@dataclass
class Flow:
    source: tuple[str, int]
    destination: tuple[str, int]
    route: str
    started: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))
    last: float = field(default_factory=time.monotonic)
    sent: int = 0
    received: int = 0
    upstream: asyncio.DatagramTransport | None = None
    refused: str = ""


class _Upstream(asyncio.DatagramProtocol):
    def __init__(self, relay: UDPRelay, flow: Flow) -> None:
        self.relay, self.flow = relay, flow

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.flow.received += len(data)
        self.flow.last = time.monotonic()
        if self.relay.transport is not None:
            self.relay.transport.sendto(data, self.flow.source)


class UDPRelay(asyncio.DatagramProtocol):
    def __init__(self, verdict: Verdict, record: Callable[[dict[str, Any]], None]) -> None:
        self.verdict, self.record = verdict, record
        self.transport: asyncio.DatagramTransport | None = None
        self.port = 0
        self.flows: dict[tuple[str, int], Flow] = {}
        self._reaper: asyncio.Task[None] | None = None

    async def start(self, port: int = 0) -> None:
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("0.0.0.0", port))
        self.transport, _ = await loop.create_datagram_endpoint(lambda: self, sock=sock)
        self.port = sock.getsockname()[1]
        self._reaper = asyncio.create_task(self._reap())

    def stop(self) -> None:
        for flow in list(self.flows.values()):
            self._end(flow)
        if self._reaper is not None:
            self._reaper.cancel()
        if self.transport is not None:
            self.transport.close()

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        flow = self.flows.get(addr)
        if flow is None:
            if len(self.flows) >= MAX_FLOWS:
                return
            destination = original_destination(addr, self.port)
            if destination is None:
                log.warning("no conntrack entry for a datagram from %s:%d", *addr)
                return
            target, route, reason = self.verdict(addr[0], *destination)
            log.debug("UDP %s:%d -> %s:%d: %s", *addr, *destination,
                     f"to {target[0]}:{target[1]} ({route})" if target else reason)
            flow = Flow(addr, destination, route, refused=reason)
            self.flows[addr] = flow
            if target is None:
                self._end(flow)  # recorded now; later datagrams are dropped unrecorded
                self.flows[addr] = flow
            else:
                asyncio.get_running_loop().create_task(self._open(flow, target, data))
                flow.sent += len(data)
                return
        flow.last = time.monotonic()
        if flow.refused:
            return
        flow.sent += len(data)
        if flow.upstream is not None:
            flow.upstream.sendto(data)

    async def _open(self, flow: Flow, target: tuple[str, int], first: bytes) -> None:
        loop = asyncio.get_running_loop()
        try:
            flow.upstream, _ = await loop.create_datagram_endpoint(
                lambda: _Upstream(self, flow), remote_addr=target)
        except OSError as err:
            flow.refused = f"cannot reach {target[0]}:{target[1]}: {err}"
            self._end(flow)
            return
        flow.upstream.sendto(first)

    def _end(self, flow: Flow) -> None:
        if flow.upstream is not None:
            flow.upstream.close()
            flow.upstream = None
        self.record({
            "kind": "udp", "start_time": flow.started.isoformat(),
            "duration_ms": (dt.datetime.now(dt.UTC) - flow.started).total_seconds() * 1000,
            "source": f"{flow.source[0]}:{flow.source[1]}", "sandbox": flow.source[0],
            "destination": f"{flow.destination[0]}:{flow.destination[1]}",
            "bytes_received": flow.sent, "bytes_sent": flow.received,
            "cluster": "clrk_deny" if flow.refused else "udp_relay",
            "chain": flow.route, "deny_reason": flow.refused})

    async def _reap(self) -> None:
        while True:
            await asyncio.sleep(5)
            now = time.monotonic()
            for addr, flow in list(self.flows.items()):
                if now - flow.last > IDLE:
                    del self.flows[addr]
                    if not flow.refused:
                        self._end(flow)
