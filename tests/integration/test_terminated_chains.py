"""Terminated chains in a real Envoy, with the real policy service, reached from a
network namespace wired like a sandbox's: an upstream that echoes the request (the
injected credential in its headers and body, in base64, inside a base64 blob, a few
bytes per write) has every form of the credential scrubbed from what the client reads,
on each path (Envoy alone metering a provider call, Envoy alone with credential_injector,
the policy service with bodies and without); and CONNECT, sent in clear or inside the
terminated TLS, is answered at once with 405 and recorded."""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import pytest

from clrk import pki
from clrk.egress import l4, routing
from clrk.egress.envoy.http import (
    Native,
    TerminatedHost,
    cleartext_chain,
    policy_cluster,
    terminated_chain,
    tls_upstream_cluster,
)
from clrk.egress.envoy.listeners import GatewayListener, base_clusters, host_clusters, listener
from clrk.egress.envoy.metering import Metering
from clrk.egress.envoy.supervisor import EnvoySupervisor
from clrk.egress.leaves import LeafCertificates
from clrk.egress.metered import Meter, MeterFiles
from clrk.egress.policy.service import PolicyService
from clrk.egress.policy.state import PolicyState
from clrk.egress.scrub import Patterns
from clrk.egress.secret_files import SecretFiles
from tests.fake_providers import FakeProviders
from tests.kube_cluster import free_port
from tests.netns import veth_netns

HOST_IP, NS_IP = "10.218.0.1", "10.218.0.2"
KEYS = {"api.anthropic.com": "sk-ant-metered-1a2b3c4d5e6f",  # Envoy meters (Lua)
        "api.openai.com": "sk-openai-python-7a8b9c0d",  # the policy service, with bodies
        "api.github.com": "ghp-native-token-5e6f7a8b",  # Envoy alone, credential_injector
        "bedrock-runtime.us-east-1.amazonaws.com": "query/key+with=odd chars"}  # ext_proc,
# no bodies: the policy service asks for this one's answer to scrub it
VIPS = {h: f"198.18.0.{i}" for i, h in enumerate(KEYS, 1)}
L4_PY = "bedrock-runtime.us-east-1.amazonaws.com"


class Collected(list[dict[str, Any]]):
    """The records the policy service writes (the worker ships them in production)."""

    def record(self, gateway: str, item: dict[str, Any]) -> None:
        self.append(item)


@dataclass
class Gateway:
    ns: str
    ca: Path
    log: Path
    fake: FakeProviders
    records: Collected


@pytest.fixture
def fake() -> Iterator[FakeProviders]:
    providers = FakeProviders(keys={h: k for h, k in KEYS.items() if h != L4_PY})
    providers.start()
    yield providers
    providers.stop()


def _policy(name: str, kind: str, route: str, key: str, **spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": name}, "spec": {
        "targetRef": {"kind": kind, "name": route}, "secretRef": {"name": "keys"},
        "secretKey": key, **spec}}


@pytest.fixture
async def gateway(tmp_path: Path, fake: FakeProviders) -> AsyncIterator[Gateway]:
    gateway_ca = pki.generate_ca("gateway")
    (tmp_path / "trust.pem").write_bytes(fake.ca.cert_pem)
    (tmp_path / "ca.pem").write_bytes(gateway_ca.cert_pem)
    log = tmp_path / "access.log"
    records = Collected()
    state = PolicyState("ns", {"gw": {"metadata": {"name": "gw"},
                                      "spec": {"defaultPolicy": "deny-all"}}},
                        secrets={"keys": {"stringData": {
                            "anthropic": KEYS["api.anthropic.com"],
                            "openai": KEYS["api.openai.com"], "query": KEYS[L4_PY]}}},
                        records=records)
    state.routes["gw"] = routing.HttpRoutes(ai=[
        routing.AIRule("anthropic", 0, "anthropic", ("api.anthropic.com",), (), ()),
        routing.AIRule("openai", 0, "openai", ("api.openai.com",), (), ())])
    creds = state.policies.by_kind["CredentialInjectionPolicy"]
    # (Envoy injects the metered host's key from its meter file; the policy service,
    # for the calls it is handed, by the same policy.)
    creds["anthropic"] = _policy("anthropic", "AIProviderRoute", "anthropic", "anthropic",
                                 headerName="x-api-key")
    creds["openai"] = _policy("openai", "AIProviderRoute", "openai", "openai",
                              headerName="authorization", valuePrefix="Bearer ")
    creds["query"] = _policy("query", "EgressL4Route", "l4py", "query",
                             target="QueryParam", queryParamName="key")
    service = PolicyService(state, tmp_path / "policy.sock")
    await service.start()
    leaves, secrets = LeafCertificates(tmp_path / "leaves"), SecretFiles(tmp_path)
    meters = MeterFiles(tmp_path / "shm")
    gh = KEYS["api.github.com"]
    native = Native("EgressL4Route/github", log, header="authorization",
                    secret_file=secrets.write("gh", f"Bearer {gh}"), secret_name="gh",
                    scrub_file=secrets.write_scrub("gh", gh))
    chains, clusters = [], [*base_clusters(), policy_cluster(service.socket)]
    for host, vip in VIPS.items():
        cluster = f"tls/{host}"
        clusters.append(tls_upstream_cluster(cluster, host, "127.0.0.1", fake.port,
                                             tmp_path / "trust.pem"))
        ai = host in ("api.anthropic.com", "api.openai.com")
        route = "" if ai else ("EgressL4Route/github" if host == "api.github.com"
                               else "EgressL4Route/l4py")
        meter = Metering(meters.meter_file("gw", host), meters.traces, log) if ai else None
        terminated = TerminatedHost("ns/gw", host, vip, 443, leaves.leaf(gateway_ca, host),
                                    ai, cluster, route,
                                    native if host == "api.github.com" else None, (), meter,
                                    log)
        chains += [terminated_chain(terminated), cleartext_chain(terminated)]
    metered = KEYS["api.anthropic.com"]
    meters.sync({meters.meter_file("gw", "api.anthropic.com"): Meter(
        "AIProviderRoute/anthropic", "anthropic", "x-api-key", metered,
        Patterns.of([metered]).items)})
    plan = l4.GatewayRoutes(rules=[
        l4.L4Rule((), ("api.github.com",), (443,), "github", frozenset({443})),
        l4.L4Rule((), (L4_PY,), (443,), "l4py", frozenset({443}))],
        aliases={h: f"127.0.0.1:{fake.port}" for h in ("api.github.com", L4_PY)})
    vips = {h: VIPS[h] for h in ("api.github.com", L4_PY)}
    clusters += host_clusters(plan, vips)
    port = free_port()
    sup = EnvoySupervisor(tmp_path / "envoy", free_port(), "test")
    with veth_netns("sc", HOST_IP, NS_IP) as (ns, host_if):
        hosts = Path("/etc/netns") / ns / "hosts"
        hosts.parent.mkdir(parents=True, exist_ok=True)
        hosts.write_text("".join(f"{ip} {h}\n" for h, ip in VIPS.items()))
        rule = ["PREROUTING", "-i", host_if, "-p", "tcp", "-j", "REDIRECT", "--to-ports",
                str(port)]
        subprocess.run(["iptables", "-w", "-t", "nat", "-A", *rule], check=True)
        try:
            await sup.start()
            await sup.ready()
            sup.write([listener(GatewayListener("ns", "gw", port, "deny-all", log), plan,
                                vips, chains)], clusters)
            assert await sup.loaded(20), (sup.config_dir / "envoy.log").read_text()[-3000:]
            yield Gateway(ns, tmp_path / "ca.pem", log, fake, records)
        finally:
            subprocess.run(["iptables", "-w", "-t", "nat", "-D", *rule], capture_output=True)
            hosts.unlink(missing_ok=True)
            hosts.parent.rmdir()
            await sup.stop()
            await service.stop()
            secrets.remove()


CLIENT = r"""
import http.client, json, socket, ssl, sys
ca, calls = sys.argv[1], json.loads(sys.argv[2])
ctx = ssl.create_default_context(cafile=ca)
for label, host, method, path, body, headers in calls:
    conn = http.client.HTTPSConnection(host, 443, context=ctx, timeout=20)
    conn.request(method, path, body=body, headers=headers)
    r = conn.getresponse()
    print(json.dumps({"label": label, "status": r.status, "headers": r.getheaders(),
                      "body": r.read().decode("utf-8", "replace")}), flush=True)
    conn.close()
"""

CONNECT = r"""
import json, socket, ssl, sys
ca, host, how = sys.argv[1], sys.argv[2], sys.argv[3]
sock = socket.create_connection((host, 443), timeout=10)  # a hang fails, at 10 s
if how == "tls":
    ctx = ssl.create_default_context(cafile=ca)
    ctx.set_alpn_protocols(["http/1.1"])
    sock = ctx.wrap_socket(sock, server_hostname=host)
sock.sendall(b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n")
answer = b""
while b"\r\n\r\n" not in answer:
    data = sock.recv(4096)
    if not data:
        break
    answer += data
head, _, body = answer.partition(b"\r\n\r\n")
print(json.dumps({"head": head.decode(), "body": body.decode()}))
"""


async def run(gw: Gateway, script: str, *args: str) -> list[dict[str, Any]]:
    """The client, in the namespace (the policy service answers on this loop)."""
    proc = await asyncio.create_subprocess_exec(
        "ip", "netns", "exec", gw.ns, sys.executable, "-c", script, str(gw.ca), *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    return [json.loads(line) for line in out.decode().splitlines() if line.strip()]


def forbidden(value: str) -> list[str]:
    """What the client must never read: the value and its common encodings."""
    raw = value.encode()
    return [value, quote(value, safe=""), base64.b64encode(raw).decode(),
            base64.b64encode(raw).decode().rstrip("="), base64.urlsafe_b64encode(raw).decode()]


def log_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()] \
        if path.exists() else []


async def test_injected_credentials_never_come_back(gateway: Gateway) -> None:
    echo = json.dumps({"model": "m", "echo": True, "max_tokens": 5})
    stream = json.dumps({"model": "m", "echo": True, "stream": True, "max_tokens": 5})
    json_type = {"content-type": "application/json", "accept-encoding": "gzip"}
    calls: list[tuple[str, str, str, str, str | None, dict[str, str]]] = [
        ("metered", "api.anthropic.com", "POST", "/v1/messages", echo, json_type),
        ("metered-sse", "api.anthropic.com", "POST", "/v1/messages", stream, json_type),
        ("python", "api.openai.com", "POST", "/v1/chat/completions", echo, json_type),
        ("python-sse", "api.openai.com", "POST", "/v1/chat/completions", stream, json_type),
        ("native", "api.github.com", "GET", "/user/echo", None, {}),
        ("native-sse", "api.github.com", "GET", "/events/echo", None,
         {"accept": "text/event-stream"}),
        ("l4-python", L4_PY, "GET", "/model/x/echo?alt=1", None, {}),
        ("l4-python-sse", L4_PY, "GET", "/model/x/echo", None,
         {"accept": "text/event-stream"})]
    got = {r["label"]: r for r in await run(gateway, CLIENT, json.dumps(calls))}
    assert set(got) == {c[0] for c in calls}
    host_of = {c[0]: c[1] for c in calls}
    for label, answer in got.items():
        assert answer["status"] == 200, answer
        text = json.dumps(answer)
        for value in KEYS.values():
            for form in forbidden(value):
                assert form not in text, (label, form, answer)
        assert "[redacted]" in answer["body"], (label, answer)
        headers = {k.lower(): v for k, v in answer["headers"]}
        assert headers["x-echo-credential"].startswith("[redacted]"), (label, headers)
        if label.endswith("-sse"):
            assert headers["content-type"] == "text/event-stream"
            assert "event: echo" in answer["body"]
        else:
            # A length sent still holds: a mask is as long as what it hides. (Envoy
            # drops it on a chain that streams every body to the policy service.)
            assert int(headers.get("content-length", len(answer["body"].encode()))) == \
                len(answer["body"].encode()), (label, headers)
            assert "content-length" in headers or label == "python"
            doc = json.loads(answer["body"])
            upstream = doc["headers"]
            assert upstream["host"] == host_of[label]
            assert "accept-encoding" not in upstream  # no compressed answer to scrub
    # The credentials did go upstream, each where its policy puts it.
    seen = {s.headers["host"]: s for s in gateway.fake.seen}
    assert seen["api.anthropic.com"].headers["x-api-key"] == KEYS["api.anthropic.com"]
    assert seen["api.openai.com"].headers["authorization"] == \
        f"Bearer {KEYS['api.openai.com']}"
    assert seen["api.github.com"].headers["authorization"] == \
        f"Bearer {KEYS['api.github.com']}"
    assert parse_qs(urlsplit(seen[L4_PY].path).query)["key"] == [KEYS[L4_PY]]
    # Each scrub is recorded: in the access log of the calls Envoy served alone, in the
    # policy service's records for the others.
    for _ in range(100):
        logged = [ln for ln in log_lines(gateway.log) if ln.get("scrubbed")]
        if len(logged) >= 3:
            break
        await asyncio.sleep(0.1)
    assert sorted(ln["host"] for ln in logged) == [
        "api.anthropic.com", "api.github.com", "api.github.com"], logged
    assert all(int(ln["scrubbed"]) >= 3 for ln in logged)
    python = [r for r in gateway.records if r["attributes"].get("clrk.egress.scrubbed")]
    assert sorted(r["attributes"]["server.address"] for r in python) == sorted(
        ["api.anthropic.com", "api.openai.com", "api.openai.com", L4_PY, L4_PY]), \
        [r["attributes"] for r in gateway.records]


@pytest.mark.parametrize("how", ["tls", "clear"])
async def test_connect_is_answered_at_once(gateway: Gateway, how: str) -> None:
    """CONNECT to each kind of terminated chain: 405 at once (the client's 10 s timeout
    would fail the run), and a denial in the records."""
    for host in VIPS:
        answer = (await run(gateway, CONNECT, host, how))[0]
        assert answer["head"].startswith("HTTP/1.1 405"), (host, answer)
        assert "\r\nallow: GET, " in answer["head"]
        assert f"terminates TLS for {host}:443" in answer["body"]
    for _ in range(100):
        refused = [ln for ln in log_lines(gateway.log) if ln.get("method") == "CONNECT"]
        if len(refused) >= len(VIPS):
            break
        await asyncio.sleep(0.1)
    assert sorted(ln["host"] for ln in refused) == sorted(VIPS), refused
    assert all(ln["decision"] == "deny" and ln["status"] == 405 and
               "CONNECT is not allowed" in ln["deny_reason"] for ln in refused)
    assert not gateway.fake.seen  # nothing went upstream
