"""The web console's API with a million spans and a hundred thousand invocations stored.

An API server (in this process, its chDB store in a temporary directory) is filled with
--invocations finished invocations over the last 7 days, each with its execution span
and --calls-per egress spans (LLM calls with tokens and cost, MCP and HTTP calls, TCP
connections and DNS lookups, some refused), written the way the API server records
them (otel_traces rows, so the materialized view reduces them as it would). Then each
page's API is asked --n times over HTTPS with a session cookie, one request at a time,
and its p50 and p99 latency printed. Target: p50 <= 100 ms, p99 <= 300 ms.
Run: .venv/bin/python benchmarks/console_queries.py [--invocations 100000] [--calls-per 9]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import random
import secrets
import ssl
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.figures import pct  # noqa: E402
from clrk.controlplane.apiserver import APIServer  # noqa: E402

AGENTS = [(f"agent-{i:02d}", "TaskAgent" if i % 5 else "DaemonAgent") for i in range(40)]
MODELS = [("anthropic", "claude-haiku-4-5", "0.000132"), ("anthropic", "claude-sonnet-4-5",
          "0.000396"), ("openai", "gpt-4o-mini", "0.0000216"), ("openai", "gpt-x", "")]
KIND_MIX = ["llm", "llm", "llm", "llm", "mcp", "http", "tcp", "dns", "dns"]


def span_row(ts: dt.datetime, trace: str, span: str, parent: str, name: str, scope: str,
             service: str, attrs: dict[str, str], duration: int, status: str, message: str = ""
             ) -> list[Any]:
    return [ts, trace, span, parent, "", name, "Client" if parent else "Server", service,
            {"service.namespace": "default"}, scope, "", attrs, duration, status, message,
            [], [], [], [], [], [], []]


def invocation_rows(i: int, now: dt.datetime, calls: int, rng: random.Random
                    ) -> tuple[list[list[Any]], list[Any]]:
    agent, kind = AGENTS[i % len(AGENTS)]
    start = now - dt.timedelta(seconds=rng.uniform(0, 7 * 86_400))
    name, trace, root = f"{agent}-{i:08x}", secrets.token_hex(16), secrets.token_hex(8)
    phase = "Succeeded" if rng.random() > 0.05 else "Failed"
    duration = int(rng.lognormvariate(20.5, 0.6))
    who = {"clrk.agent.namespace": "default", "clrk.agent.kind": kind,
           "clrk.agent.name": agent, "clrk.invocation": name}
    spans = [span_row(start, trace, root, "", f"invoke {agent}", "clrk", "clrk",
                      {**who, "clrk.invocation.phase": phase, "clrk.trigger": "api"},
                      duration, "Ok" if phase == "Succeeded" else "Error")]
    for k in range(calls):
        kind_of_call = KIND_MIX[k % len(KIND_MIX)]
        at = start + dt.timedelta(milliseconds=20 * k)
        denied = rng.random() < 0.03
        attrs = {**who, "clrk.gateway": "default/gw", "clrk.decision":
                 "deny" if denied else "allow"}
        if denied:
            attrs["clrk.deny_reason"] = "no route of the gateway matched (deny-all)"
        if kind_of_call == "llm":
            provider, model, usd = MODELS[rng.randrange(len(MODELS))]
            attrs.update({"gen_ai.provider.name": provider, "gen_ai.request.model": model,
                          "gen_ai.usage.input_tokens": "12", "gen_ai.usage.output_tokens": "24",
                          "server.address": f"api.{provider}.com",
                          "clrk.route": "default/ai"})
            attrs.update({"clrk.cost.priced": "true", "clrk.cost.usd": usd} if usd else
                         {"clrk.cost.priced": "false"})
            name_of_call = f"POST api.{provider}.com/v1/messages"
        elif kind_of_call == "mcp":
            attrs.update({"mcp.method.name": "tools/call", "gen_ai.tool.name": "search",
                          "server.address": "mcp.example.com"})
            name_of_call = "POST mcp.example.com/mcp"
        elif kind_of_call == "http":
            attrs.update({"http.request.method": "GET", "server.address": "example.org"})
            name_of_call = "GET example.org/"
        elif kind_of_call == "tcp":
            attrs.update({"network.transport": "tcp", "server.address": "db.internal"})
            name_of_call = "egress tcp db.internal:5432"
        else:
            attrs.update({"dns.question.name": f"host{k}.example.com"})
            name_of_call = f"dns host{k}.example.com"
        spans.append(span_row(at, trace, secrets.token_hex(8), root, name_of_call,
                              "clrk.egress", agent, attrs, int(rng.uniform(1e6, 9e8)),
                              "Error" if denied else "Ok", attrs.get("clrk.deny_reason", "")))
    obj = {"apiVersion": "clrk.apoxy.dev/v1alpha1", "kind": "Invocation",
           "metadata": {"name": name, "namespace": "default",
                        "creationTimestamp": start.strftime("%Y-%m-%dT%H:%M:%SZ")},
           "spec": {"agentKind": kind, "agentName": agent, "traceId": trace, "spanId": root,
                    "trigger": "api"},
           "status": {"phase": phase}}
    row = ["default", name, i + 1, start, kind, agent, phase, json.dumps(obj)]
    return spans, row


async def fill(server: APIServer, invocations: int, calls: int) -> int:
    assert server.telemetry is not None
    rng = random.Random(7)
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    spans: list[list[Any]] = []
    rows: list[Any] = []
    total = 0
    for i in range(invocations):
        s, r = invocation_rows(i, now, calls, rng)
        spans += s
        rows.append(r)
        if len(spans) >= 50_000:
            server.telemetry.insert("otel_traces", spans)
            server.telemetry.insert("clrk_invocations", rows)
            total += len(spans)
            spans, rows = [], []
    server.telemetry.insert("otel_traces", spans)
    server.telemetry.insert("clrk_invocations", rows)
    server.telemetry.flush()
    return total + len(spans)


async def measure(client: httpx.AsyncClient, path: str, n: int) -> list[float]:
    times = []
    for _ in range(n):
        t = time.perf_counter()
        r = await client.get(path)
        times.append((time.perf_counter() - t) * 1000)
        assert r.status_code == 200, (path, r.status_code, r.text[:300])
    return times


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--invocations", type=int, default=100_000)
    ap.add_argument("--calls-per", type=int, default=9)
    ap.add_argument("--n", type=int, default=40)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="clrk-console-bench-") as tmp:
        server = APIServer(Path(tmp))
        await server.start()
        try:
            t = time.perf_counter()
            spans = await fill(server, args.invocations, args.calls_per)
            print(f"stored {spans} spans and {args.invocations} invocations in "
                  f"{time.perf_counter() - t:.0f} s")
            ctx = ssl.create_default_context(cadata=server.ca_pem.decode())
            async with httpx.AsyncClient(base_url=server.url, verify=ctx, timeout=60) as c:
                auth = {"Authorization": f"Bearer {server.token}"}
                for agent, kind in AGENTS:  # the objects the agents page lists
                    plural = kind.lower() + "s"
                    r = await c.post(f"/apis/clrk.apoxy.dev/v1alpha1/namespaces/default/"
                                     f"{plural}", headers=auth, json={
                                         "apiVersion": "clrk.apoxy.dev/v1alpha1",
                                         "kind": kind, "metadata": {"name": agent},
                                         "spec": {"template": {"spec": {
                                             "image": "busybox:1.36"}}}})
                    assert r.status_code == 201, r.text
                r = await c.post("/console/login", data={"token": server.token})
                assert r.status_code == 303, r.text
                sample = (await c.get("/console/api/invocations?limit=1")).json()["items"][0]
                pages = {
                    "overview 1h": "/console/api/overview?window=1h",
                    "overview 24h": "/console/api/overview?window=24h",
                    "overview 7d": "/console/api/overview?window=7d",
                    "agents 7d": "/console/api/agents?window=7d",
                    "agent page 7d": "/console/api/agents/default/TaskAgent/agent-01?window=7d",
                    "invocations": "/console/api/invocations?limit=100",
                    "invocation page": f"/console/api/invocations/default/{sample['name']}",
                    "spend 7d": "/console/api/spend?window=7d",
                    "egress 7d": "/console/api/egress?window=7d",
                    "workers": "/console/api/workers",
                    "live": "/console/api/live",
                }
                print(f"{'page API':<18} {'p50 ms':>8} {'p99 ms':>8}")
                for label, path in pages.items():
                    await measure(c, path, 2)  # warm the caches once
                    times = await measure(c, path, args.n)
                    print(f"{label:<18} {pct(times, 0.5):>8.1f} {pct(times, 0.99):>8.1f}")
        finally:
            await server.stop()


if __name__ == "__main__":
    asyncio.run(main())
