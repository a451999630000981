"""The DNS responder for a worker's sandboxes (their only nameserver).

A sandbox's UDP port 53 is redirected here; the source address says which sandbox asks.
A name its gateway allows is resolved by the worker itself (an upstream server, or the
host's resolver) and the answer is remembered, so rules on hostnames can match the
addresses a sandbox later dials. Anything else is answered REFUSED and never leaves
the worker, so a lookup cannot carry data out.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from dnslib import AAAA, QTYPE, RCODE, RR, A, DNSRecord

log = logging.getLogger("clrk.worker.dns")
# (sandbox address, name) -> False: refuse; True: resolve it; an address: answer that
# (a route's virtual address).
Decide = Callable[[str, str], Awaitable[str | bool]]
ANSWER_TTL = 30


@dataclass
class Seen:
    """What a sandbox looked up: address -> (name, expiry)."""

    answers: dict[str, tuple[str, float]] = field(default_factory=dict)

    def remember(self, name: str, address: str, ttl: int) -> None:
        self.answers[address] = (name, time.monotonic() + max(ttl, ANSWER_TTL))

    def name_of(self, address: str) -> str | None:
        found = self.answers.get(address)
        return found[0] if found and found[1] > time.monotonic() else None


class DNSResponder(asyncio.DatagramProtocol):
    def __init__(self, decide: Decide, upstream: tuple[str, int] | None = None,
                 on_lookup: Callable[[str, str, str, list[str]], None] | None = None) -> None:
        self.decide = decide
        self.on_lookup = on_lookup  # (sandbox, name, verdict, answers): for the records
        self.upstream = upstream
        self.seen: dict[str, Seen] = {}
        self.refused = 0
        self.transport: asyncio.DatagramTransport | None = None
        self.port = 0
        self._pending: set[asyncio.Task[None]] = set()  # answers under way (kept alive)

    async def start(self, host: str = "0.0.0.0") -> None:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(lambda: self, local_addr=(host, 0))
        self.transport = transport
        self.port = int(transport.get_extra_info("sockname")[1])

    def stop(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def forget(self, sandbox: str) -> None:
        self.seen.pop(sandbox, None)

    def name_of(self, sandbox: str, address: str) -> str | None:
        seen = self.seen.get(sandbox)
        return seen.name_of(address) if seen else None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        task = asyncio.get_running_loop().create_task(self._answer(data, addr))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _answer(self, data: bytes, addr: tuple[str, int]) -> None:
        try:
            query = DNSRecord.parse(data)
        except Exception:  # not DNS: nothing to answer
            return
        reply = query.reply()
        name = str(query.q.qname).rstrip(".").lower()
        source = addr[0].removeprefix("::ffff:")
        verdict = await self.decide(source, name)
        outcome = "deny"
        if verdict is False:
            self.refused += 1
            log.info("refused %s from %s", name, source)
            reply.header.rcode = RCODE.REFUSED
        elif isinstance(verdict, str):
            outcome = "route"
            if query.q.qtype == QTYPE.A:
                reply.add_answer(RR(query.q.qname, QTYPE.A, rdata=A(verdict),
                                    ttl=ANSWER_TTL))
            self.seen.setdefault(source, Seen()).remember(name, verdict, ANSWER_TTL)
        else:
            outcome = "allow"
            try:
                reply = await self._resolve(query, data)
            except OSError as err:
                log.warning("lookup of %s for %s failed: %s", name, source, err)
                reply.header.rcode = RCODE.SERVFAIL
            seen = self.seen.setdefault(source, Seen())
            for rr in reply.rr:
                if rr.rtype in (QTYPE.A, QTYPE.AAAA):
                    seen.remember(name, str(rr.rdata), rr.ttl)
        if self.transport is not None:
            self.transport.sendto(reply.pack(), addr)
        if self.on_lookup is not None:
            self.on_lookup(source, name, outcome,
                           [str(rr.rdata) for rr in reply.rr if rr.rtype in (QTYPE.A,
                                                                             QTYPE.AAAA)])

    async def _resolve(self, query: DNSRecord, raw: bytes) -> DNSRecord:
        if self.upstream is not None:
            loop = asyncio.get_running_loop()
            answer: asyncio.Future[bytes] = loop.create_future()

            class Once(asyncio.DatagramProtocol):
                def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
                    if not answer.done():
                        answer.set_result(data)

            transport, _ = await loop.create_datagram_endpoint(
                Once, remote_addr=self.upstream)
            try:
                transport.sendto(raw)
                return DNSRecord.parse(await asyncio.wait_for(answer, 5))
            except TimeoutError:
                raise OSError(f"upstream {self.upstream[0]}:{self.upstream[1]} did not "
                              "answer") from None
            finally:
                transport.close()
        reply = query.reply()
        qtype = QTYPE[query.q.qtype]
        family = {"A": socket.AF_INET, "AAAA": socket.AF_INET6}.get(qtype)
        if family is None:
            return reply  # other types: an empty answer
        infos = await asyncio.get_running_loop().getaddrinfo(
            str(query.q.qname).rstrip("."), None, family=family, type=socket.SOCK_STREAM)
        for address in sorted({i[4][0] for i in infos}):
            rdata = A(address) if family == socket.AF_INET else AAAA(address)
            reply.add_answer(RR(query.q.qname, query.q.qtype, rdata=rdata, ttl=ANSWER_TTL))
        return reply
