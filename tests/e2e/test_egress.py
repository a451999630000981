"""Egress through the worker's Envoy, from inside real sandboxes: an agent's TCP is
redirected to its EgressGateway's listener; allow-all reaches an outside address (a
server in a network namespace the test creates), deny-all and no gateway do not, and
every connection is in the gateway's access log."""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from dnslib import QTYPE, RCODE, RR, A
from dnslib.server import BaseResolver, DNSServer

from tests.conftest import DevServer, start_dev
from tests.images import Registry, build, busybox_recipe, python_base
from tests.netns import veth_netns

pytestmark = pytest.mark.e2e
UPSTREAM = "198.51.100.10"  # TEST-NET-2: "outside", yet only in the test's namespace

ONE_ECHO = """
import socketserver, sys, threading
class Echo(socketserver.BaseRequestHandler):
    def handle(self):
        self.request.settimeout(10)
        self.request.sendall(b"echo:" + self.request.recv(100))
class UDPEcho(socketserver.BaseRequestHandler):
    def handle(self):
        data, sock = self.request
        sock.sendto(b"udp-echo:" + data, self.client_address)
socketserver.ThreadingTCPServer.allow_reuse_address = True
udp = socketserver.ThreadingUDPServer(("0.0.0.0", 9000), UDPEcho)
threading.Thread(target=udp.serve_forever, daemon=True).start()
if len(sys.argv) > 2:  # an HTTPS-ish echo on 443 with the test's certificate
    import ssl
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(sys.argv[1], sys.argv[2])
    class TLSEcho(socketserver.BaseRequestHandler):
        def handle(self):
            with ctx.wrap_socket(self.request, server_side=True) as t:
                t.sendall(b"tls-echo:" + t.recv(100))
    tls = socketserver.ThreadingTCPServer(("0.0.0.0", 443), TLSEcho)
    threading.Thread(target=tls.serve_forever, daemon=True).start()
socketserver.ThreadingTCPServer(("0.0.0.0", 9000), Echo).serve_forever()
"""


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from clrk import pki

    certs = tmp_path_factory.mktemp("outside-tls")
    leaf = pki.issue_leaf(pki.generate_ca("outside-ca"), ["outside.test"])
    (certs / "leaf.pem").write_bytes(leaf.cert_pem)
    (certs / "leaf.key").write_bytes(leaf.key_pem)
    with veth_netns("up", "198.51.100.9", UPSTREAM) as (ns, _):
        server = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-c", ONE_ECHO,
                                   str(certs / "leaf.pem"), str(certs / "leaf.key")])
        try:
            yield UPSTREAM
        finally:
            server.kill()
            server.wait()


class FakeDNS:
    """The upstream DNS server the worker's responder asks: it knows one name and
    remembers every question (to show which never reached it)."""

    def __init__(self) -> None:
        self.questions: list[str] = []
        outer = self

        class Resolver(BaseResolver):  # type: ignore[misc]
            def resolve(self, request: Any, handler: Any) -> Any:
                name = str(request.q.qname).rstrip(".")
                outer.questions.append(name)
                reply = request.reply()
                if name == "allowed.test" and request.q.qtype == QTYPE.A:
                    reply.add_answer(RR(request.q.qname, QTYPE.A, rdata=A(UPSTREAM), ttl=60))
                elif name != "allowed.test":
                    reply.header.rcode = RCODE.NXDOMAIN
                return reply

        self.server = DNSServer(Resolver(), port=0, address="127.0.0.1")
        self.server.start_thread()
        self.port = self.server.server.server_address[1]

    def stop(self) -> None:
        self.server.stop()


@pytest.fixture(scope="module")
def fake_dns() -> Iterator[FakeDNS]:
    server = FakeDNS()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def dev(registry: Registry, upstream: str, fake_dns: FakeDNS,
        tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevServer]:
    registry.push("test/shell", "1", build(busybox_recipe(Entrypoint=["/bin/sh", "-c"])))
    registry.push("test/python", "1", python_base())
    server = start_dev(tmp_path_factory.mktemp("egress") / "clrk", "--insecure-registry",
                       registry.host, workers=1,
                       env={"CLRK_DNS_UPSTREAM": f"127.0.0.1:{fake_dns.port}"})
    try:
        server.wait_for_worker()
        yield server
    finally:
        server.stop()


def apply(dev: DevServer, *docs: Mapping[str, object]) -> None:
    dev.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(docs))


@contextlib.contextmanager
def tagging_server(tag: str) -> Iterator[int]:
    """A TCP service on the host's loopback that answers ``tag`` (``{port}`` is filled
    in) followed by what it received; yields its port."""
    import socketserver
    import threading

    class Tag(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            address = self.server.server_address
            assert isinstance(address, tuple)
            port = address[1]
            self.request.sendall(tag.format(port=port).encode() + self.request.recv(100))

    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Tag)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()


def gateway(name: str, policy: str) -> dict[str, object]:
    return {"apiVersion": "clrk.apoxy.dev/v1alpha1", "kind": "EgressGateway",
            "metadata": {"name": name}, "spec": {"defaultPolicy": policy}}


def caller(name: str, image: str, gw: str | None, target: str = UPSTREAM
           ) -> dict[str, object]:
    spec: dict[str, object] = {"workerPoolRef": "default", "timeout": "30s", "template": {
        "spec": {"image": image, "args": [
            # stdin stays open until the reply: busybox nc stops reading at stdin's end.
            f"(echo hello; sleep 2) | timeout 5 nc {target} 9000; echo rc=$?"]}}}
    if gw:
        spec["egressRefs"] = [{"gatewayRef": gw}]
    return {"apiVersion": "clrk.apoxy.dev/v1alpha1", "kind": "TaskAgent",
            "metadata": {"name": name}, "spec": spec}


def call(dev: DevServer, name: str) -> str:
    r = httpx.post(f"{dev.ingress}/", content=b"{}", timeout=60,
                   headers={"X-Clrk-TaskAgent": f"default/{name}"})
    assert r.status_code == 200, (r.status_code, r.headers.get("x-clrk-reason"), r.text)
    return r.text


def test_default_policies_through_the_gateway(dev: DevServer, registry: Registry,
                                              upstream: str) -> None:
    image = f"{registry.host}/test/shell:1"
    apply(dev, gateway("open", "allow-all"), gateway("closed", "deny-all"),
          caller("via-open", image, "open"), caller("via-closed", image, "closed"),
          caller("no-gateway", image, None))
    # allow-all: the sandbox reaches the outside address, through Envoy.
    deadline = time.monotonic() + 30
    while "echo:hello" not in (out := call(dev, "via-open")):
        assert time.monotonic() < deadline, out  # the worker learns of the gateway first
        time.sleep(0.5)
    # deny-all (the default) and no gateway at all: refused.
    assert "echo:" not in call(dev, "via-closed")
    assert "echo:" not in call(dev, "no-gateway")
    # Each connection is in its gateway's access log, attributed to a sandbox address.
    envoy = Path(dev.data_dir) / "workers" / "worker-0" / "envoy"

    def entries(gw: str) -> list[dict[str, str]]:
        log = envoy / f"access-default-{gw}.log"
        return [json.loads(x) for x in log.read_text().splitlines()] if log.exists() else []

    deadline = time.monotonic() + 10
    while not (entries("open") and entries("closed")):
        assert time.monotonic() < deadline, "no access log entries"
        time.sleep(0.3)
    opened = entries("open")[-1]
    assert opened["destination"] == f"{UPSTREAM}:9000" and opened["cluster"] == \
        "clrk_original_dst"
    assert opened["source"].startswith("10.213.")
    assert entries("closed")[-1]["cluster"] == "clrk_deny"
    # Each connection is also a span under its invocation, attributed to the agent.
    def traced(agent: str, decision: str) -> bool:
        out = dev.clrk("agents", "traces", agent).stdout
        return f"egress tcp {UPSTREAM}:9000  {decision}" in out

    deadline = time.monotonic() + 15
    while not (traced("via-open", "allow") and traced("via-closed", "deny")):
        assert time.monotonic() < deadline, dev.clrk("agents", "traces", "via-open").stdout
        time.sleep(0.5)
    spans = json.loads(dev.clrk("agents", "traces", "via-open", "-o", "json").stdout)
    calls = [sp for sp in spans if sp["name"].startswith("egress tcp")]
    parents = {sp["spanId"]: sp for sp in spans if not sp["parentSpanId"]}
    assert calls and all(c["parentSpanId"] in parents for c in calls), spans
    call_attrs = calls[-1]["attributes"]
    assert call_attrs["clrk.agent.name"] == "via-open" and call_attrs["clrk.decision"] == \
        "allow" and call_attrs["clrk.invocation"].startswith("via-open-")
    assert call_attrs["clrk.bytes.received"] == "11"  # "echo:hello\n"
    # A gateway's port takes only redirected traffic: dialled directly it is dropped.
    port = int(json.loads((envoy / "lds.json").read_text())["resources"][0]["address"][
        "socket_address"]["port_value"])
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://127.0.0.1:{port}/", timeout=2)


def test_dns_answers_only_what_the_gateway_allows(dev: DevServer, registry: Registry,
                                                   fake_dns: FakeDNS) -> None:
    image = f"{registry.host}/test/shell:1"
    apply(dev, gateway("open", "allow-all"), gateway("closed", "deny-all"),
          caller("dns-open", image, "open", "allowed.test"),
          caller("dns-closed", image, "closed", "secret-payload.exfil.test"),
          caller("dns-none", image, None, "other-payload.exfil.test"))
    deadline = time.monotonic() + 30
    while "echo:hello" not in (out := call(dev, "dns-open")):
        assert time.monotonic() < deadline, out
        time.sleep(0.5)
    assert "allowed.test" in fake_dns.questions  # resolved by the worker, upstream
    # deny-all and no gateway: the lookup fails inside the sandbox and the question
    # never leaves the worker, so a name cannot carry data out.
    assert "echo:" not in call(dev, "dns-closed")
    assert "echo:" not in call(dev, "dns-none")
    assert not any("exfil" in q for q in fake_dns.questions), fake_dns.questions
    # Every question is on record, under the invocation that asked it.
    def asked(agent: str, line: str) -> bool:
        return line in dev.clrk("agents", "traces", agent).stdout

    deadline = time.monotonic() + 15
    while not (asked("dns-closed", "dns secret-payload.exfil.test  deny")
               and asked("dns-open", "dns allowed.test  allow")):
        assert time.monotonic() < deadline, dev.clrk("agents", "traces", "dns-closed").stdout
        time.sleep(0.5)


L4_AGENT = """
(echo hello; sleep 2) | timeout 5 nc echo.internal 9000; echo
(echo hello; sleep 2) | timeout 5 nc 198.51.100.10 9000; echo
echo "unrouted-port:$( (echo hello; sleep 1) | timeout 5 nc 198.51.100.10 9001 2>/dev/null)."
echo "unlisted-name:$( (echo hello; sleep 1) | timeout 5 nc unlisted.internal 9000 2>/dev/null)."
"""


def test_l4_routes_by_hostname_and_cidr(dev: DevServer, registry: Registry,
                                        fake_dns: FakeDNS) -> None:
    with tagging_server("loop:") as loop_port:
        l4gw = gateway("l4", "deny-all")
        l4gw["spec"] = {"defaultPolicy": "deny-all", "upstreamTLS": {"hostAliases": [
            {"hostname": "echo.internal", "address": f"127.0.0.1:{loop_port}"}]}}
        route = {"apiVersion": "clrk.apoxy.dev/v1alpha1", "kind": "EgressL4Route",
                 "metadata": {"name": "l4-routes"},
                 "spec": {"parentRefs": [{"name": "l4"}], "rules": [{"matches": [
                     {"destinationHostnames": ["echo.internal"], "ports": [{"port": 9000}]},
                     {"destinationCIDRs": [f"{UPSTREAM}/32"], "ports": [{"port": 9000}]}]}]}}
        agent = caller("l4-user", f"{registry.host}/test/shell:1", "l4")
        agent["spec"]["template"]["spec"]["args"] = [L4_AGENT]  # type: ignore[index]
        apply(dev, l4gw, route, agent)
        deadline = time.monotonic() + 30
        while "loop:hello" not in (out := call(dev, "l4-user")):
            assert time.monotonic() < deadline, out
            time.sleep(0.5)
        # By hostname (to the loopback service behind its alias) and by CIDR + port.
        assert "loop:hello" in out and "echo:hello" in out, out
        # An unrouted port is refused by the gateway; an unrouted name does not resolve.
        assert "unrouted-port:." in out and "unlisted-name:." in out, out
        # Routed names are answered by the worker itself: no upstream DNS question.
        assert not any(q.endswith(".internal") for q in fake_dns.questions)
        log = Path(dev.data_dir) / "workers" / "worker-0" / "envoy" / \
            "access-default-l4.log"
        deadline = time.monotonic() + 10
        while not (log.exists() and "clrk_deny" in log.read_text()):
            assert time.monotonic() < deadline, "no deny in the access log"
            time.sleep(0.3)
        entries = [json.loads(x) for x in log.read_text().splitlines()]
        assert any(e["cluster"] == "host/echo.internal/9000" for e in entries)
        assert any(e["destination"] == f"{UPSTREAM}:9001" and e["cluster"] == "clrk_deny"
                   for e in entries)


PEER_CERT = """
import hashlib, socket, ssl
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
with socket.create_connection(("tls.internal", 443), timeout=5) as raw:
    with ctx.wrap_socket(raw, server_hostname="tls.internal") as tls:
        print(hashlib.sha256(tls.getpeercert(binary_form=True)).hexdigest())
"""


def test_tls_passthrough_shows_the_upstreams_own_certificate(
        dev: DevServer, registry: Registry, tmp_path: Path) -> None:
    import hashlib
    import ssl
    import threading

    from cryptography import x509

    from clrk import pki

    ca = pki.generate_ca("upstream-test-ca")
    leaf = pki.issue_leaf(ca, ["tls.internal"])
    (tmp_path / "leaf.pem").write_bytes(leaf.cert_pem)
    (tmp_path / "leaf.key").write_bytes(leaf.key_pem)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(tmp_path / "leaf.pem", tmp_path / "leaf.key")
    server = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            except OSError:  # closed: the test is over
                return
            with contextlib.suppress(OSError), ctx.wrap_socket(conn, server_side=True) as t:
                t.recv(1)

    threading.Thread(target=serve, daemon=True).start()
    try:
        gw = gateway("tlsgw", "deny-all")
        gw["spec"] = {"upstreamTLS": {"hostAliases": [
            {"hostname": "tls.internal", "address": f"127.0.0.1:{server.getsockname()[1]}"}]}}
        route = {"apiVersion": "clrk.apoxy.dev/v1alpha1", "kind": "EgressL4Route",
                 "metadata": {"name": "tls-route"},
                 "spec": {"parentRefs": [{"name": "tlsgw"}], "rules": [{"matches": [
                     {"protocol": "TLS", "destinationHostnames": ["tls.internal"],
                      "ports": [{"port": 443}]}]}]}}
        agent = caller("tls-user", f"{registry.host}/test/python:1", "tlsgw")
        agent["spec"]["template"]["spec"] = {  # type: ignore[index]
            "image": f"{registry.host}/test/python:1",
            "command": ["python3", "-c", PEER_CERT]}
        apply(dev, gw, route, agent)
        want = hashlib.sha256(x509.load_pem_x509_certificate(leaf.cert_pem).public_bytes(
            serialization.Encoding.DER)).hexdigest()
        deadline = time.monotonic() + 30
        while (got := call_raw(dev, "tls-user")).text.strip() != want:
            assert time.monotonic() < deadline, (got.status_code, got.text)
            time.sleep(0.5)
    finally:
        stop.set()
        server.close()


def call_raw(dev: DevServer, name: str) -> httpx.Response:
    return httpx.post(f"{dev.ingress}/", content=b"{}", timeout=60,
                      headers={"X-Clrk-TaskAgent": f"default/{name}"})


CA_PROBE = """
import glob, os, sys
print("env", os.environ["SSL_CERT_FILE"], os.environ["REQUESTS_CA_BUNDLE"])
print("system", open("/etc/ssl/certs/ca-certificates.crt").read().count("BEGIN CERTIFICATE"))
for bundle in glob.glob("/opt/venv/lib/python3*/site-packages/*/cacert.pem"):
    print("bundled", bundle, open(bundle).read().count("BEGIN CERTIFICATE"))
sys.stdout.write(open("/etc/ssl/certs/ca-certificates.crt").read())
"""


def test_the_gateway_ca_is_trusted_in_the_sandbox(dev: DevServer, registry: Registry) -> None:
    """The gateway's CA is added to every CA bundle of the image (the system one and any
    a Python package carries), next to the image's own roots, and the CA variables name
    it."""
    import base64

    apply(dev, gateway("open", "allow-all"))
    agent = caller("ca-probe", f"{registry.host}/test/python:1", "open")
    agent["spec"]["template"]["spec"] = {  # type: ignore[index]
        "image": f"{registry.host}/test/python:1",
        "command": ["/opt/venv/bin/python", "-c", CA_PROBE]}
    apply(dev, agent)
    secret = json.loads(dev.kubectl("get", "secret", "clrk-egressgateway-ca-open", "-o",
                                    "json").stdout)
    ca = base64.b64decode(secret["data"]["ca.crt"]).decode().strip()
    deadline = time.monotonic() + 30
    while ca not in (out := call_raw(dev, "ca-probe").text):
        assert time.monotonic() < deadline, dev.clrk("agents", "logs", "ca-probe").stdout
        time.sleep(0.5)
    lines = out.splitlines()
    assert lines[0] == "env /etc/ssl/certs/ca-certificates.crt " \
        "/etc/ssl/certs/ca-certificates.crt"
    system = int(lines[1].split()[1])
    assert system > 50  # Debian's roots are still there, plus ours
    # Bundles Python packages carry (certifi and the like) are the same file.
    assert all(ln.endswith(f" {system}") for ln in lines if ln.startswith("bundled"))


def test_a_warm_sandbox_follows_its_gateway(dev: DevServer, registry: Registry) -> None:
    """Sandboxes warmed before their gateway existed had no way out; once the gateway
    appears, an invocation does not use them."""
    agent = caller("warm-egress", f"{registry.host}/test/shell:1", "late")
    agent["spec"]["warmPoolSize"] = 1  # type: ignore[index]
    agent["spec"]["template"]["spec"]["args"] = [  # type: ignore[index]
        f"read line; (echo hello; sleep 2) | timeout 5 nc {UPSTREAM} 9000"]
    apply(dev, agent)
    root = Path(dev.data_dir) / "workers" / "worker-0" / "sandboxes" / "runsc"

    def warm() -> list[str]:
        return subprocess.run(["runsc", "--root", str(root), "list", "--quiet"],
                              capture_output=True, text=True).stdout.split()

    deadline = time.monotonic() + 30
    while not warm():
        assert time.monotonic() < deadline, "the pool never warmed"
        time.sleep(0.3)
    stale = warm()
    apply(dev, gateway("late", "allow-all"))
    lds = Path(dev.data_dir) / "workers" / "worker-0" / "envoy" / "lds.json"
    deadline = time.monotonic() + 30
    while "egw/default/late" not in lds.read_text():  # the worker knows the gateway
        assert time.monotonic() < deadline, "the worker never saw the gateway"
        time.sleep(0.2)
    time.sleep(1)  # and Envoy has loaded it (it watches the file)
    # The very next call gets out: the stale warm sandbox is not used for it.
    assert "echo:hello" in call(dev, "warm-egress")
    assert not set(stale) & set(warm())
    dev.kubectl("delete", "ta", "warm-egress")


def recorded_spans(dev: DevServer, agent: str, keep: Any, what: str) -> list[dict[str, Any]]:
    """The TaskAgent's spans that ``keep`` accepts, once there are any."""
    deadline = time.monotonic() + 30
    while True:
        out = dev.kubectl("get", "--raw", "/apis/clrk.apoxy.dev/v1alpha1/namespaces/default/"
                          f"taskagents/{agent}/traces").stdout
        found = [s for s in json.loads(out)["items"] if keep(s)]
        if found:
            return found
        assert time.monotonic() < deadline, what
        time.sleep(0.5)


UDP_CALL = """
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(3)
s.sendto(b"hello", ("{target}", 9000))
try:
    print(s.recvfrom(100)[0].decode())
except OSError as err:
    print("no answer:", err)
"""


def test_udp_goes_by_the_gateways_policy(dev: DevServer, registry: Registry,
                                         upstream: str) -> None:
    """Non-DNS UDP: refused and recorded under deny-all, relayed under allow-all and by
    an EgressL4Route with protocol UDP."""
    image = f"{registry.host}/test/python:1"
    udp_route = {"apiVersion": "clrk.apoxy.dev/v1alpha1", "kind": "EgressL4Route",
                 "metadata": {"name": "udp-echo"},
                 "spec": {"parentRefs": [{"name": "udp-routed"}], "rules": [{"matches": [
                     {"protocol": "UDP", "destinationCIDRs": [f"{upstream}/32"],
                      "ports": [{"port": 9000}]}]}]}}
    agents = []
    for name, gw in (("udp-open", "open"), ("udp-closed", "closed"),
                     ("udp-routed", "udp-routed")):
        agent = caller(name, image, gw)
        agent["spec"]["template"]["spec"] = {  # type: ignore[index]
            "image": image, "command": ["python3", "-c", UDP_CALL.replace("{target}",
                                                                          upstream)]}
        agents.append(agent)
    apply(dev, gateway("open", "allow-all"), gateway("closed", "deny-all"),
          gateway("udp-routed", "deny-all"), udp_route, *agents)
    deadline = time.monotonic() + 30
    while "udp-echo:hello" not in (out := call(dev, "udp-open")):
        assert time.monotonic() < deadline, out
        time.sleep(0.5)
    assert "udp-echo:hello" in call(dev, "udp-routed")
    assert "udp-echo" not in call(dev, "udp-closed")

    found = recorded_spans(
        dev, "udp-closed", lambda s: s["attributes"].get("network.transport") == "udp",
        "the refused UDP flow was not recorded")
    assert found[0]["attributes"]["clrk.decision"] == "deny"
    assert found[0]["attributes"]["server.address"] == upstream


HTTPS_CALL = """
import socket, ssl
ctx = ssl.create_default_context()
ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE  # the outside's own test cert
try:
    with socket.create_connection(("{target}", 443), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname="outside.test") as t:
            t.sendall(b"hello")
            print(t.recv(100).decode())
except OSError as err:
    print("refused:", type(err).__name__)
"""


def test_https_to_an_unlisted_host(dev: DevServer, registry: Registry, upstream: str) -> None:
    """HTTPS to a host no route names: refused and recorded (with its SNI) under
    deny-all, let through untouched under allow-all."""
    image = f"{registry.host}/test/python:1"
    agents = []
    for name, gw in (("tls-open", "open"), ("tls-closed", "closed")):
        agent = caller(name, image, gw)
        agent["spec"]["template"]["spec"] = {  # type: ignore[index]
            "image": image, "command": ["python3", "-c", HTTPS_CALL.replace("{target}",
                                                                            upstream)]}
        agents.append(agent)
    apply(dev, gateway("open", "allow-all"), gateway("closed", "deny-all"), *agents)
    deadline = time.monotonic() + 30
    while "tls-echo:hello" not in (out := call(dev, "tls-open")):
        assert time.monotonic() < deadline, out
        time.sleep(0.5)
    assert "refused:" in call(dev, "tls-closed")

    found = recorded_spans(
        dev, "tls-closed", lambda s: s["attributes"].get("server.address") == "outside.test",
        "the refused HTTPS connection was not recorded")
    assert found[0]["attributes"]["clrk.decision"] == "deny"
    assert found[0]["attributes"]["server.port"] == "443"


def test_source_agents_limit_who_may_use_a_route(dev: DevServer, registry: Registry,
                                                upstream: str) -> None:
    """A route's sourceAgents: the named agent's connections go through, another agent
    of the same gateway is refused per connection and the refusal is recorded."""
    image = f"{registry.host}/test/shell:1"
    route = {"apiVersion": "clrk.apoxy.dev/v1alpha1", "kind": "EgressL4Route",
             "metadata": {"name": "only-one"},
             "spec": {"parentRefs": [{"name": "src-gw"}], "rules": [{"matches": [
                 {"destinationCIDRs": [f"{upstream}/32"], "ports": [{"port": 9000}],
                  "sourceAgents": [{"kind": "TaskAgent", "name": "src-allowed"}]}]}]}}
    apply(dev, gateway("src-gw", "deny-all"), route,
          caller("src-allowed", image, "src-gw"), caller("src-other", image, "src-gw"))
    deadline = time.monotonic() + 30
    while "echo:hello" not in (out := call(dev, "src-allowed")):
        assert time.monotonic() < deadline, out
        time.sleep(0.5)
    assert "echo:" not in call(dev, "src-other")

    found = recorded_spans(
        dev, "src-other",
        lambda s: "sourceAgents" in s["attributes"].get("clrk.deny_reason", ""),
        "the refusal was not recorded")
    assert found[0]["attributes"]["server.address"] == upstream


ANY_PORT = """
import socket
for port in PORTS:
    try:
        with socket.create_connection(("any.internal", port), timeout=5) as s:
            s.sendall(b"hi")
            print(s.recv(100).decode())
    except OSError as err:
        print("failed", port, repr(err))
"""


def test_hostname_route_without_ports(dev: DevServer, registry: Registry) -> None:
    """A hostname rule with no ports lets the agent reach that host on any port (here
    two loopback services behind its alias); other names stay unresolved."""
    with contextlib.ExitStack() as stack:
        ports = [stack.enter_context(tagging_server("port{port}:")) for _ in range(2)]
        gw = gateway("anyport", "deny-all")
        gw["spec"] = {"defaultPolicy": "deny-all", "upstreamTLS": {"hostAliases": [
            {"hostname": "any.internal", "address": "127.0.0.1"}]}}
        route = {"apiVersion": "clrk.apoxy.dev/v1alpha1", "kind": "EgressL4Route",
                 "metadata": {"name": "any-port"},
                 "spec": {"parentRefs": [{"name": "anyport"}], "rules": [{"matches": [
                     {"destinationHostnames": ["any.internal"]}]}]}}
        agent = caller("anyport-user", f"{registry.host}/test/python:1", "anyport")
        agent["spec"]["template"]["spec"] = {  # type: ignore[index]
            "image": f"{registry.host}/test/python:1",
            "command": ["python3", "-c", ANY_PORT.replace("PORTS", repr(ports))]}
        apply(dev, gw, route, agent)
        deadline = time.monotonic() + 30
        want = [f"port{p}:hi" for p in ports]
        while not all(w in (out := call(dev, "anyport-user")) for w in want):
            assert time.monotonic() < deadline, out
            time.sleep(0.5)


WILD = """
import json, socket, sys
host = json.load(sys.stdin)["data"]["host"]
try:
    with socket.create_connection((host, 9000), timeout=5) as s:
        s.sendall(b"hi")
        print(s.recv(100).decode())
except OSError as err:
    print("failed", host, repr(err))
"""


def test_a_new_name_under_a_wildcard_connects_at_once(dev: DevServer,
                                                      registry: Registry) -> None:
    """`*.` rules: a name first seen in a DNS lookup gets its own chain in Envoy before
    the answer (the worker waits for the versions Envoy reports), so the connection
    right after the first lookup works; a name outside the wildcard is not answered."""
    with tagging_server("wild:") as port:
        address = f"127.0.0.1:{port}"
        gw = gateway("wild", "deny-all")
        gw["spec"] = {"defaultPolicy": "deny-all", "upstreamTLS": {"hostAliases": [
            {"hostname": f"{n}.wild.internal", "address": address} for n in ("a", "b")]}}
        route: dict[str, object] = {
            "apiVersion": "clrk.apoxy.dev/v1alpha1", "kind": "EgressL4Route",
            "metadata": {"name": "wild"},
            "spec": {"parentRefs": [{"name": "wild"}], "rules": [{"matches": [
                {"destinationHostnames": ["*.wild.internal"], "ports": [{"port": 9000}]}]}]}}
        agent = caller("wild-user", f"{registry.host}/test/python:1", "wild")
        agent["spec"]["template"]["spec"] = {  # type: ignore[index]
            "image": f"{registry.host}/test/python:1", "command": ["python3", "-c", WILD]}
        apply(dev, gw, route, agent)

        def ask(host: str) -> str:
            r = httpx.post(f"{dev.ingress}/", json={"host": host}, timeout=60,
                           headers={"X-Clrk-TaskAgent": "default/wild-user"})
            assert r.status_code == 200, (r.status_code, r.text)
            return r.text

        deadline = time.monotonic() + 30
        while "wild:hi" not in (out := ask("a.wild.internal")):  # the route is in place
            assert time.monotonic() < deadline, out
            time.sleep(0.5)
        # A name never asked before: its first lookup, then its first connection.
        assert "wild:hi" in ask("b.wild.internal")
        assert "failed" in ask("other.internal")  # not under the wildcard: no answer
