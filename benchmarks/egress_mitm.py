"""Added latency and throughput of the L7 egress path, measured with `wrk` (keep-alive)
from a network namespace wired like a sandbox's, against the same TLS upstream (a
second Envoy answering with a fixed Anthropic-shaped body):

- direct: wrk -> upstream
- TLS passthrough: wrk -> Envoy (SNI-routed tcp_proxy) -> upstream
- MITM + header (Envoy): wrk -> Envoy (TLS terminated, the credential header injected
  by Envoy's credential_injector from an SDS file, the answer scrubbed of it by a Lua
  filter, request logged) -> upstream (TLS again): what an EgressL4Route with a header
  credential gets
- MITM + header (ext_proc): the same through the policy service, headers only (what a
  route with a rate limit or a non-header credential gets)
- token accounting (Envoy): an Anthropic route Envoy meters alone (its Lua filter
  injects the key and traceparent and scrubs the answer of the key; json_to_metadata
  reads the model and the usage of every answer into the access log)
- token accounting (ext_proc): the same route once it needs the policy service (its
  meter file removed, as when a rate limit is attached): bodies through ext_proc

One Envoy worker thread, the policy service in this process (as in the worker).
Needs root. Run: .venv/bin/python benchmarks/egress_mitm.py [--seconds 5] [--c 10]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.kube_cluster import free_port  # noqa: E402
from tests.netns import veth_netns  # noqa: E402

from clrk import pki  # noqa: E402
from clrk.egress import l4, routing  # noqa: E402
from clrk.egress.envoy.binary import envoy_binary  # noqa: E402
from clrk.egress.envoy.http import (  # noqa: E402
    Native,
    TerminatedHost,
    policy_cluster,
    terminated_chain,
    tls_upstream_cluster,
)
from clrk.egress.envoy.listeners import (  # noqa: E402
    GatewayListener,
    base_clusters,
    host_clusters,
    listener,
)
from clrk.egress.envoy.metering import Metering  # noqa: E402
from clrk.egress.envoy.supervisor import EnvoySupervisor  # noqa: E402
from clrk.egress.leaves import LeafCertificates  # noqa: E402
from clrk.egress.metered import Meter, MeterFiles, record_fields  # noqa: E402
from clrk.egress.policy.service import PolicyService  # noqa: E402
from clrk.egress.policy.state import PolicyState  # noqa: E402
from clrk.egress.scrub import Patterns  # noqa: E402
from clrk.egress.secret_files import SecretFiles  # noqa: E402

HOST_IP, NS_IP = "10.216.0.1", "10.216.0.2"
VIPS = {"api.anthropic.com": "198.18.0.1", "plain.test": "198.18.0.2",
        "pass.test": "198.18.0.3", "native.test": "198.18.0.4"}
ANSWER = json.dumps({"id": "msg", "type": "message", "role": "assistant", "model": "claude-b",
                     "content": [{"type": "text", "text": "hi"}], "stop_reason": "end_turn",
                     "usage": {"input_tokens": 12, "output_tokens": 24}}).encode()
BODY = json.dumps({"model": "claude-b", "max_tokens": 5,
                   "messages": [{"role": "user", "content": "hi"}]})


def upstream_config(port: int, cert: Path, key: Path) -> dict[str, object]:
    """A second Envoy as the upstream: TLS, keep-alive, a fixed Anthropic-shaped answer
    (fast and steady, so the figures measure the egress path, not the fake)."""
    t = "type.googleapis.com/envoy.extensions"
    return {"static_resources": {"listeners": [{
        "name": "upstream",
        "address": {"socket_address": {"address": "0.0.0.0", "port_value": port}},
        "filter_chains": [{
            "transport_socket": {"name": "tls", "typed_config": {
                "@type": f"{t}.transport_sockets.tls.v3.DownstreamTlsContext",
                "common_tls_context": {"tls_certificates": [{
                    "certificate_chain": {"filename": str(cert)},
                    "private_key": {"filename": str(key)}}]}}},
            "filters": [{"name": "hcm", "typed_config": {
                "@type": f"{t}.filters.network.http_connection_manager.v3"
                         ".HttpConnectionManager",
                # Read the whole request before answering, or Envoy closes the connection
                # after each early direct response (no keep-alive).
                "stat_prefix": "up", "http_filters": [
                    {"name": "buffer", "typed_config": {
                        "@type": f"{t}.filters.http.buffer.v3.Buffer",
                        "max_request_bytes": 1048576}},
                    {"name": "router", "typed_config": {
                        "@type": f"{t}.filters.http.router.v3.Router"}}],
                "route_config": {"virtual_hosts": [{"name": "all", "domains": ["*"],
                                                    "routes": [{
                    "match": {"prefix": "/"},
                    "response_headers_to_add": [{"header": {
                        "key": "content-type", "value": "application/json"}}],
                    "direct_response": {"status": 200,
                                        "body": {"inline_string": ANSWER.decode()}}}]}]}}}]}]}]}}


def _ms(text: str) -> float:
    m = re.match(r"([\d.]+)(us|ms|s|m)$", text)
    if m is None:
        raise ValueError(f"unreadable wrk latency {text!r}")
    return float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[m.group(2)]


def wrk(ns: str, url: str, seconds: int, c: int, script: Path) -> tuple[float, float, float]:
    """(requests/s, p50 ms, p99 ms) of keep-alive POSTs; non-2xx answers fail the run."""
    out = subprocess.run(["ip", "netns", "exec", ns, "wrk", "-t1", f"-c{c}", f"-d{seconds}s",
                          "--latency", "-s", str(script), url],
                         capture_output=True, text=True, check=True).stdout
    assert "Non-2xx" not in out and "Socket errors" not in out, out
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"(?m)^\s+50%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"(?m)^\s+99%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    return rps, p50, p99


def envoy_cpu(sup: EnvoySupervisor) -> float:
    """The gateway Envoy's CPU time so far, in seconds (a figure the host's load moves
    far less than throughput)."""
    assert sup.proc is not None
    fields = Path(f"/proc/{sup.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def metered_lines(log: Path) -> str:
    """What the worker does with the access-log line of each call Envoy metered (its
    GenAI attributes), timed; and a check that every line carried the usage."""
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    lines = [item for item in lines if item.get("provider")]
    start = time.process_time()
    found = [record_fields(item)["attributes"] for item in lines]
    spent = time.process_time() - start
    # (Calls wrk cut off at the end of a run have no answer, hence no usage.)
    bad = [a for a, item in zip(found, lines, strict=True)
           if str(item.get("status")) == "200" and a.get("gen_ai.usage.output_tokens") != "24"]
    assert not bad, (len(bad), bad[:2])
    return (f"{len(found)} metered calls logged with their usage; the worker read each "
            f"line's attributes in {spent / max(len(found), 1) * 1e6:.0f} us CPU")


async def main(seconds: int, c: int, only_path: str = "") -> None:
    port, envoy_port = free_port(), free_port()
    upstream_ca, gateway_ca = pki.generate_ca("bench-upstream"), pki.generate_ca("bench-gw")
    leaf = pki.issue_leaf(upstream_ca, ["api.anthropic.com", "plain.test", "pass.test",
                                        "direct.test", "native.test"])
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        (tmp / "up.crt").write_bytes(leaf.cert_pem)
        (tmp / "up.key").write_bytes(leaf.key_pem)
        (tmp / "trust.pem").write_bytes(upstream_ca.cert_pem)
        (tmp / "client.pem").write_bytes(upstream_ca.cert_pem + gateway_ca.cert_pem)
        (tmp / "upstream.json").write_text(json.dumps(upstream_config(
            port, tmp / "up.crt", tmp / "up.key")))
        server = subprocess.Popen([str(envoy_binary()), "-c", str(tmp / "upstream.json"),
                                   "--concurrency", "1", "--disable-hot-restart",
                                   "--base-id", "7", "-l", "error"])
        gateway = {"metadata": {"name": "gw", "namespace": "bench"},
                   "spec": {"defaultPolicy": "allow-all"}}
        state = PolicyState("bench", {"gw": gateway}, secrets={"keys": {"data": {
            "k": "c2stYmVuY2gta2V5"}}})
        state.routes["gw"] = routing.HttpRoutes(ai=[routing.AIRule(
            "anthropic", 0, "anthropic", ("api.anthropic.com",), (), ())])
        state.policies.by_kind["CredentialInjectionPolicy"]["key"] = {
            "metadata": {"name": "key"},
            "spec": {"targetRef": {"kind": "EgressGateway", "name": "gw"},
                     "secretRef": {"name": "keys"}, "secretKey": "k", "target": "Header",
                     "headerName": "x-api-key"}}
        service = PolicyService(state, tmp / "policy.sock")
        await service.start()
        leaves = LeafCertificates(tmp / "leaves")
        chains, clusters = [], [*base_clusters(), policy_cluster(service.socket)]
        secrets = SecretFiles(tmp)
        native = Native("EgressL4Route/bench", tmp / "http.log", header="x-api-key",
                        secret_file=secrets.write("bench-key", "sk-bench-key"),
                        secret_name="bench-key",
                        scrub_file=secrets.write_scrub("bench-key", "sk-bench-key"))
        meters = MeterFiles(tmp / "meter")
        metering = Metering(meters.meter_file("gw", "api.anthropic.com"), meters.traces,
                            tmp / "http.log")
        for host, bodies, how in (("api.anthropic.com", True, None),
                                  ("plain.test", False, None), ("native.test", False, native)):
            cluster = f"tls/{host}"
            clusters.append(tls_upstream_cluster(cluster, host, "127.0.0.1", port,
                                                 tmp / "trust.pem"))
            chains.append(terminated_chain(TerminatedHost(
                "bench/gw", host, VIPS[host], 443, leaves.leaf(gateway_ca, host), bodies,
                cluster, native=how, meter=metering if bodies else None)))
        plan = l4.GatewayRoutes(rules=[l4.L4Rule((), ("pass.test",), (443,))],
                                aliases={"pass.test": f"127.0.0.1:{port}"})
        vips = {"pass.test": VIPS["pass.test"]}
        clusters += host_clusters(plan, vips)
        sup = EnvoySupervisor(tmp / "envoy", free_port(), "bench")
        (Path("/etc/netns")).mkdir(exist_ok=True)
        with veth_netns("mitm", HOST_IP, NS_IP) as (ns, host_if):
            hosts = Path("/etc/netns") / ns / "hosts"
            hosts.parent.mkdir(parents=True, exist_ok=True)
            hosts.write_text("".join(f"{ip} {h}\n" for h, ip in VIPS.items())
                             + f"{HOST_IP} direct.test\n")
            rule = ["PREROUTING", "-i", host_if, "-p", "tcp", "-d", "198.18.0.0/16",
                    "-j", "REDIRECT", "--to-ports", str(envoy_port)]
            try:
                await sup.start()
                await sup.ready()
                gw = GatewayListener("bench", "gw", envoy_port, "allow-all", tmp / "a.log")
                sup.write([listener(gw, plan, vips, chains)], clusters)
                subprocess.run(["iptables", "-w", "-t", "nat", "-A", *rule], check=True)
                await asyncio.sleep(1.5)
                script = tmp / "post.lua"
                script.write_text(f"wrk.method = 'POST'\nwrk.body = '{BODY}'\n"
                                  "wrk.headers['Content-Type'] = 'application/json'\n")
                runs = [("direct", f"https://direct.test:{port}/v1/messages"),
                        ("TLS passthrough", "https://pass.test/v1/messages"),
                        ("MITM + header (Envoy)", "https://native.test/v1/messages"),
                        ("MITM + header (ext_proc)", "https://plain.test/v1/messages"),
                        ("token accounting (Envoy)", "https://api.anthropic.com/v1/messages"),
                        ("token accounting (ext_proc)",
                         "https://api.anthropic.com/v1/messages")]
                meter = Meter("AIProviderRoute/anthropic", "anthropic", "x-api-key",
                              "sk-bench-key", Patterns.of(["sk-bench-key"]).items)
                results = {}
                cpu: dict[str, float] = {}  # this process's (the policy service's) CPU
                gateway_cpu: dict[str, float] = {}  # the gateway Envoy's
                only = [r for r in runs
                        if r[0] == "direct" or not only_path or r[0].startswith(only_path)]
                for name, url in only:
                    metered = name == "token accounting (Envoy)"
                    meters.sync({metering.meter_file: meter} if metered else {})
                    await asyncio.to_thread(wrk, ns, url, 1, c, script)  # warm up
                    before = resource.getrusage(resource.RUSAGE_SELF)
                    envoy_before = envoy_cpu(sup)
                    results[name] = await asyncio.to_thread(wrk, ns, url, seconds, c, script)
                    after = resource.getrusage(resource.RUSAGE_SELF)
                    done = results[name][0] * seconds
                    cpu[name] = (after.ru_utime + after.ru_stime - before.ru_utime
                                 - before.ru_stime) / done * 1e6
                    gateway_cpu[name] = (envoy_cpu(sup) - envoy_before) / done * 1e6
                if "--stats" in sys.argv:
                    import urllib.request
                    stats = urllib.request.urlopen(f"{sup.admin_url}/stats").read().decode()
                    print("\n".join(ln for ln in stats.splitlines() if re.search(
                        r"cluster\.(tls|clrk_policy).*(upstream_cx_total|upstream_rq_total|"
                        r"upstream_cx_connect_ms)", ln)))
                if "token accounting (Envoy)" in results:
                    print(metered_lines(tmp / "http.log"))
                base = results["direct"]
                for name, (rps, p50, p99) in results.items():
                    extra = "" if name == "direct" else \
                        f"  added p50 {p50 - base[1]:+.2f} ms, p99 {p99 - base[2]:+.2f} ms"
                    print(f"{name:<26} {rps:8.0f} rps  p50 {p50:6.2f} ms  "
                          f"p99 {p99:6.2f} ms{extra}  policy service "
                          f"{cpu[name]:.0f} us CPU/request, Envoy "
                          f"{gateway_cpu[name]:.0f} us")
                print(f"(wrk -t1 -c{c} -d{seconds}s, keep-alive POSTs of {len(BODY)} bytes, "
                      "one Envoy worker thread, policy service in-process)")
            finally:
                subprocess.run(["iptables", "-w", "-t", "nat", "-D", *rule],
                               capture_output=True)
                hosts.unlink(missing_ok=True)
                hosts.parent.rmdir()
                await sup.stop()
                await service.stop()
                secrets.remove()
                server.terminate()
                server.wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--c", type=int, default=10)
    parser.add_argument("--stats", action="store_true", help="print Envoy's cluster stats")
    parser.add_argument("--only", default="", help="run the paths named so (and direct) "
                        "only, e.g. 'token accounting' (to profile them)")
    a = parser.parse_args()
    asyncio.run(main(a.seconds, a.c, a.only))
