"""One network namespace and veth pair per sandbox, and the firewall around them.

The sandbox gets a /30 from the worker's pool: its end of the veth is the .2, the
worker's end the .1 (where the metadata service answers). From a sandbox only the
worker's metadata port is reachable; everything else it sends to the host, other
sandboxes or beyond is dropped. The egress issue replaces the final DROP with the
redirect to the gateway (`Firewall.rules`).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import secrets
from dataclasses import dataclass, field, replace
from pathlib import Path

log = logging.getLogger("clrk.worker.network")
NETNS_DIR = "/var/run/netns"


class NetworkError(RuntimeError):
    pass


TABLES = ("iptables", "ip6tables")


async def _run(*args: str, check: bool = True) -> str:
    if args[0] in TABLES:  # wait for the xtables lock: setups and teardowns overlap
        args = (args[0], "-w", *args[1:])
    proc = await asyncio.create_subprocess_exec(
        *args, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT)
    out, _ = await proc.communicate()
    if check and proc.returncode:
        raise NetworkError(f"{' '.join(args)} failed: {out.decode().strip()}")
    return out.decode()


async def _run_batch(cmd: list[str], lines: list[str]) -> None:
    proc = await asyncio.create_subprocess_exec(
        *cmd, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT)
    out, _ = await proc.communicate("\n".join(lines).encode() + b"\n")
    if proc.returncode:
        raise NetworkError(f"{' '.join(cmd)} failed: {out.decode(errors='replace').strip()}")


@dataclass(frozen=True)
class SandboxNet:
    netns: str
    host_if: str
    host_ip: str
    sandbox_ip: str
    host_ip6: str
    sandbox_ip6: str
    egress_port: int | None = None  # the egress gateway its TCP is redirected to

    @property
    def netns_path(self) -> str:
        return f"{NETNS_DIR}/{self.netns}"

    @property
    def sandbox_addresses(self) -> tuple[str, str]:
        return self.sandbox_ip, self.sandbox_ip6


@dataclass
class Network:
    """Per-worker: its address pool, interface prefix and firewall chain."""

    index: int  # distinct per worker on a host
    metadata_port: int
    egress_ports: tuple[int, int] | None = None  # the worker's egress gateway port range
    dns_port: int | None = None  # the worker's DNS responder (sandboxes' UDP 53 goes there)
    udp_port: int | None = None  # the worker's UDP relay (other UDP of gateway sandboxes)
    cidr: str = "10.213.0.0/16"
    cidr6: str = "fd0c:c1a0::/48"  # a /64 per worker; a /126 per sandbox
    _free: list[ipaddress.IPv4Network] = field(default_factory=list)
    _used: dict[str, ipaddress.IPv4Network] = field(default_factory=dict)
    _teardowns: set[asyncio.Task[None]] = field(default_factory=set)
    by_address: dict[str, SandboxNet] = field(default_factory=dict)  # live sandboxes
    # Namespaces made ahead (netns, veth, addresses, routes), so that a cold start does
    # not wait ~9 ms for `ip`; only its gateway redirect is added when it is taken. Their
    # names are kept in ``spare_file`` (for whoever wonders what an idle netns is).
    spares: int = 2
    spare_file: Path | None = None
    _spare: list[tuple[ipaddress.IPv4Network, SandboxNet]] = field(default_factory=list)
    _making: asyncio.Task[None] | None = None
    _closing: bool = False

    def __post_init__(self) -> None:
        base = ipaddress.IPv4Network(self.cidr)
        self._block = list(base.subnets(new_prefix=20))[self.index]
        self._free = list(self._block.subnets(new_prefix=30))
        base6 = ipaddress.IPv6Network(self.cidr6)
        self._base6 = int(base6.network_address) + (self.index << 64)

    def _v6(self, block: ipaddress.IPv4Network) -> tuple[str, str]:
        """The IPv6 pair that goes with a v4 /30: the same position in the worker's /64."""
        k = (int(block.network_address) - int(self._block.network_address)) // 4
        return (str(ipaddress.IPv6Address(self._base6 + 4 * k + 1)),
                str(ipaddress.IPv6Address(self._base6 + 4 * k + 2)))

    @property
    def prefix(self) -> str:
        return f"clk{self.index}x"

    @property
    def chain(self) -> str:
        return f"CLRK-W{self.index}"

    def rules(self, tool: str = "iptables") -> list[list[str]]:
        """The filter rules for traffic from this worker's sandboxes. IPv6 also needs
        neighbour discovery (what ARP, which iptables never sees, does for IPv4)."""
        wild = f"{self.prefix}+"
        ndp = [["-A", self.chain, "-i", wild, "-p", "ipv6-icmp", "--icmpv6-type", kind,
                "-j", "ACCEPT"] for kind in ("neighbour-solicitation",
                                             "neighbour-advertisement")]
        # Connections the nat chain redirected to an egress gateway (never a direct
        # connection to a gateway's port: that one is not DNAT'd, so it is dropped).
        redirected = [["-A", self.chain, "-i", wild, "-p", proto, "-m", "conntrack",
                       "--ctstate", "DNAT", "-j", "ACCEPT"] for proto in ("tcp", "udp")]
        return [
            *(ndp if tool == "ip6tables" else []),
            ["-A", self.chain, "-i", wild, "-p", "tcp", "--dport", str(self.metadata_port),
             "-j", "ACCEPT"],
            *(redirected if tool == "iptables" else []),
            ["-A", self.chain, "-i", wild, "-j", "DROP"],
        ]

    @property
    def nat_chain(self) -> str:
        return f"CLRK-N{self.index}"

    def _nat_entry(self) -> list[str]:
        return ["PREROUTING", "-i", f"{self.prefix}+", "-j", self.nat_chain]

    def _nat_exemptions(self) -> list[list[str]]:
        """Nothing addressed to the host itself, another sandbox or link-local is
        redirected (it stays subject to the filter chain, which drops all but the
        metadata service); the sandboxes' own REDIRECT rules follow these."""
        dns = [["-A", self.nat_chain, "-p", "udp", "--dport", "53", "-j", "REDIRECT",
                "--to-ports", str(self.dns_port)]] if self.dns_port else []
        return [*dns,
                ["-A", self.nat_chain, "-m", "addrtype", "--dst-type", "LOCAL", "-j",
                 "RETURN"],
                ["-A", self.nat_chain, "-d", self.cidr, "-j", "RETURN"],
                ["-A", self.nat_chain, "-d", "169.254.0.0/16", "-j", "RETURN"]]

    async def install(self) -> None:
        await self.uninstall()
        try:
            await self._install()
        except BaseException:
            await self.uninstall()  # never leave half a firewall behind
            raise
        self._make_spares()

    async def _install(self) -> None:
        for tool in TABLES:
            await _run(tool, "-N", self.chain)
            for rule in self.rules(tool):
                await _run(tool, *rule)
            await _run(tool, "-I", "INPUT", "-i", f"{self.prefix}+", "-j", self.chain)
            await _run(tool, "-I", "FORWARD", "-i", f"{self.prefix}+", "-j", "DROP")
        await _run("iptables", "-t", "nat", "-N", self.nat_chain)
        for rule in self._nat_exemptions():
            await _run("iptables", "-t", "nat", *rule)
        await _run("iptables", "-t", "nat", "-A", *self._nat_entry())
        if self.egress_ports is not None:
            await _run("iptables", "-I", "INPUT", *self._guard())
        if self.udp_port is not None:
            await _run("iptables", "-I", "INPUT", *self._guard_udp())

    async def uninstall(self) -> None:
        wild = f"{self.prefix}+"
        for tool in TABLES:
            while (await _run(tool, "-D", "INPUT", "-i", wild, "-j", self.chain,
                              check=False)) == "":
                pass
            while (await _run(tool, "-D", "FORWARD", "-i", wild, "-j", "DROP",
                              check=False)) == "":
                pass
            await _run(tool, "-F", self.chain, check=False)
            await _run(tool, "-X", self.chain, check=False)
        while (await _run("iptables", "-t", "nat", "-D", *self._nat_entry(),
                          check=False)) == "":
            pass
        if self.egress_ports is not None:
            while (await _run("iptables", "-D", "INPUT", *self._guard(), check=False)) == "":
                pass
        if self.udp_port is not None:
            while (await _run("iptables", "-D", "INPUT", *self._guard_udp(),
                              check=False)) == "":
                pass
        await _run("iptables", "-t", "nat", "-F", self.nat_chain, check=False)
        await _run("iptables", "-t", "nat", "-X", self.nat_chain, check=False)

    def _guard(self) -> list[str]:
        """The gateway ports take only what a sandbox's redirect sent them (no open
        proxy for anything else that reaches this host)."""
        assert self.egress_ports is not None
        return ["-p", "tcp", "--dport", f"{self.egress_ports[0]}:{self.egress_ports[1]}",
                "-m", "conntrack", "!", "--ctstate", "DNAT", "-j", "DROP"]

    def _guard_udp(self) -> list[str]:
        assert self.udp_port is not None
        return ["-p", "udp", "--dport", str(self.udp_port), "-m", "conntrack", "!",
                "--ctstate", "DNAT", "-j", "DROP"]

    def _redirect(self, net: SandboxNet, port: int) -> list[str]:
        return [self.nat_chain, "-i", net.host_if, "-p", "tcp", "-j", "REDIRECT",
                "--to-ports", str(port)]

    def _redirects(self, net: SandboxNet, port: int) -> list[list[str]]:
        """TCP to the gateway's listener; UDP (DNS was taken earlier in the chain) to
        the worker's relay, which asks the gateway's policy per flow."""
        out = [self._redirect(net, port)]
        if self.udp_port is not None:
            out.append([self.nat_chain, "-i", net.host_if, "-p", "udp", "-j", "REDIRECT",
                        "--to-ports", str(self.udp_port)])
        return out

    async def setup(self, sid: str, egress_port: int | None = None) -> SandboxNet:
        """The sandbox's netns and veth; with ``egress_port``, its outbound TCP goes to
        the egress gateway listening there (without one, it is dropped)."""
        if self._spare:
            block, net = self._spare.pop(0)
            self._write_spares()
        else:
            block, net = await self._make()
        self._make_spares()
        net = replace(net, egress_port=egress_port)
        self._used[sid] = block
        try:
            if egress_port is not None:  # one iptables-restore: this is on every cold start
                await _run_batch(["iptables-restore", "-w", "--noflush"], [
                    "*nat", *(" ".join(["-A", *r]) for r in self._redirects(net, egress_port)),
                    "COMMIT"])
            self.by_address[net.sandbox_ip] = self.by_address[net.sandbox_ip6] = net
        except BaseException:
            await self.teardown(sid, net)
            raise
        return net

    async def _make(self) -> tuple[ipaddress.IPv4Network, SandboxNet]:
        """A fresh namespace joined to the host by a veth, with its addresses and routes
        (a used one never serves again: gVisor's netstack takes its addresses)."""
        if not self._free:
            raise NetworkError("the worker's sandbox address pool is exhausted")
        block = self._free.pop(0)
        host_ip, sandbox_ip = (str(h) for h in list(block.hosts())[:2])
        host_ip6, sandbox_ip6 = self._v6(block)
        short = secrets.token_hex(4)
        net = SandboxNet(f"clrk-{self.index}-{short}", f"{self.prefix}{short}", host_ip,
                         sandbox_ip, host_ip6, sandbox_ip6)
        try:
            # Two `ip -batch` runs instead of eight processes.
            await _run_batch(["ip", "-batch", "-"], [
                f"netns add {net.netns}",
                f"link add {net.host_if} type veth peer name eth0 netns {net.netns}",
                f"addr add {host_ip}/30 dev {net.host_if}",
                f"addr add {host_ip6}/126 dev {net.host_if} nodad",
                f"link set {net.host_if} up"])
            await _run_batch(["ip", "-n", net.netns, "-batch", "-"], [
                f"addr add {sandbox_ip}/30 dev eth0",
                f"addr add {sandbox_ip6}/126 dev eth0 nodad", "link set eth0 up",
                "link set lo up", f"route add default via {host_ip}",
                f"route add ::/0 via {host_ip6}"])
        except BaseException:
            await self._remove(net)
            self._free.append(block)
            raise
        return block, net

    def _make_spares(self) -> None:
        if self._closing or self.spares <= 0 or \
                (self._making is not None and not self._making.done()):
            return
        self._making = asyncio.create_task(self._spares_loop())

    async def _spares_loop(self) -> None:
        await asyncio.sleep(0)  # after the caller's own work (see teardown)
        while not self._closing and len(self._spare) < self.spares and \
                len(self._free) > self.spares:
            try:
                self._spare.append(await self._make())
            except (NetworkError, OSError) as err:
                log.warning("cannot make a spare sandbox network: %s", err)
                return
            self._write_spares()

    def _write_spares(self) -> None:
        if self.spare_file is not None:
            self.spare_file.write_text("".join(f"{n.netns} {n.host_if}\n"
                                               for _, n in self._spare))

    def teardown_later(self, sid: str, net: SandboxNet) -> None:
        """Tear down off the response path (the addresses return to the pool after)."""
        task = asyncio.create_task(self.teardown(sid, net))
        self._teardowns.add(task)
        task.add_done_callback(self._teardowns.discard)

    async def drain(self) -> None:
        """Wait for background work and remove the spare namespaces (worker shutdown)."""
        self._closing = True
        if self._making is not None:
            await asyncio.gather(self._making, return_exceptions=True)
        while self._spare:
            block, net = self._spare.pop()
            await self._remove(net)
            self._free.append(block)
        self._write_spares()
        while self._teardowns:
            await asyncio.gather(*list(self._teardowns), return_exceptions=True)
        self._closing = False

    async def teardown(self, sid: str, net: SandboxNet) -> None:
        # Started as an execution ends: let its result frame, queued in the same loop
        # iteration, go out before this spawns processes (that costs the caller ~3 ms).
        await asyncio.sleep(0)
        for address in net.sandbox_addresses:
            if self.by_address.get(address) is net:
                del self.by_address[address]
        if net.egress_port is not None:
            for rule in self._redirects(net, net.egress_port):
                await _run("iptables", "-t", "nat", "-D", *rule, check=False)
        await self._remove(net)
        block = self._used.pop(sid, None)
        if block is not None:
            self._free.append(block)

    @staticmethod
    async def _remove(net: SandboxNet) -> None:
        await _run("ip", "link", "del", net.host_if, check=False)
        await _run("ip", "netns", "del", net.netns, check=False)

    async def sweep(self) -> list[str]:
        """Delete namespaces and veths a crashed predecessor of this worker left."""
        gone = []
        for line in (await _run("ip", "netns", "list", check=False)).splitlines():
            name = line.split()[0] if line.strip() else ""
            if name.startswith(f"clrk-{self.index}-"):
                await _run("ip", "netns", "del", name, check=False)
                gone.append(name)
        for line in (await _run("ip", "-o", "link", "show", check=False)).splitlines():
            parts = line.split(":")
            if len(parts) > 1:
                name = parts[1].strip().split("@")[0]
                if name.startswith(self.prefix):
                    await _run("ip", "link", "del", name, check=False)
        return gone
