"""A network namespace joined to the host by a veth, like a sandbox's, for tests and
benchmarks; always deleted afterwards."""

from __future__ import annotations

import contextlib
import secrets
import subprocess
from collections.abc import Iterator


@contextlib.contextmanager
def veth_netns(prefix: str, host_ip: str, ns_ip: str, plen: int = 30
               ) -> Iterator[tuple[str, str]]:
    """(namespace, host-side interface); the namespace's default route is the host."""
    tag = secrets.token_hex(3)
    ns, host_if = f"clrk-{prefix}-{tag}", f"clk{prefix[0]}{tag}"
    try:
        for cmd in (["ip", "netns", "add", ns],
                    ["ip", "link", "add", host_if, "type", "veth", "peer", "name", "eth0",
                     "netns", ns],
                    ["ip", "addr", "add", f"{host_ip}/{plen}", "dev", host_if],
                    ["ip", "link", "set", host_if, "up"],
                    ["ip", "-n", ns, "addr", "add", f"{ns_ip}/{plen}", "dev", "eth0"],
                    ["ip", "-n", ns, "link", "set", "eth0", "up"],
                    ["ip", "-n", ns, "link", "set", "lo", "up"],
                    ["ip", "-n", ns, "route", "add", "default", "via", host_ip]):
            subprocess.run(cmd, check=True)
        yield ns, host_if
    finally:
        subprocess.run(["ip", "link", "del", host_if], capture_output=True)
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)
