"""The web console's gate and its API over a real API server: no page, asset or data
without a session cookie; logging in with the bearer token or a one-time link; logout;
and the API's figures read back from calls recorded the way workers report them (spend
per model equal to the sum of the recorded calls' costs, unpriced calls apart, denied
connections counted, a ModelPrice override used for calls recorded after it)."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import re
import ssl
import subprocess
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from lightkube.generic_resource import create_global_resource

from clrk.console.sessions import COOKIE
from clrk.egress.providers import Usage
from clrk.telemetry import connections
from clrk.telemetry.pricing import billed_as
from tests.conftest import CLRK
from tests.integration.test_controllers import Env, agent

ModelPriceResource = create_global_resource("clrk.apoxy.dev", "v1alpha1", "ModelPrice",
                                            "modelprices")
NOW = dt.datetime.now(dt.UTC)


def client(env: Env, **kw: Any) -> httpx.AsyncClient:
    ctx = ssl.create_default_context(cadata=env.server.ca_pem.decode())
    return httpx.AsyncClient(base_url=env.server.url, verify=ctx, **kw)


def guarded_routes(env: Env) -> list[tuple[str, str]]:
    """Every console route but the login page, with each path parameter filled in."""
    api = [("GET", "/console/api" + re.sub(r"\{[^}]+\}", "x", r.path))
           for r in env.server.console.api.routes()]
    return [("GET", "/console"), ("GET", "/console/"), ("GET", "/console/static/console.js"),
            ("GET", "/console/static/console.css"), ("GET", "/console/static/nope.js"),
            ("GET", "/console/session"), ("GET", "/console/api/no-such-route"),
            ("POST", "/console/logout"), ("POST", "/console/login-links"), *api]


async def login(c: httpx.AsyncClient, token: str) -> httpx.Response:
    return await c.post("/console/login", data={"token": token})


async def test_no_console_route_answers_without_a_session(env: Env) -> None:
    routes = guarded_routes(env)
    assert len([r for r in routes if r[1].startswith("/console/api/")]) >= 12
    async with client(env) as c:
        for method, path in routes:
            for headers in ({}, {"Cookie": f"{COOKIE}=forged"}):
                r = await c.request(method, path, headers=headers)
                assert r.status_code == 401, (method, path, r.status_code)
                assert "costUSD" not in r.text and "invocations" not in r.text.lower()
        page = await c.get("/console/login")
        assert page.status_code == 200 and '<form method="post"' in page.text
        assert "frame-ancestors 'none'" in page.headers["content-security-policy"]


async def test_login_with_the_token_then_logout(env: Env) -> None:
    async with client(env) as c:
        r = await login(c, "not-the-token")
        assert r.status_code == 401 and "not valid" in r.text and "set-cookie" not in r.headers
        r = await c.post("/console/login", data={"token": env.server.token},
                         headers={"Origin": "https://evil.example"})
        assert r.status_code == 403 and "set-cookie" not in r.headers
        r = await login(c, env.server.token)
        assert r.status_code == 303 and r.headers["location"] == "/console/"
        cookie = r.headers["set-cookie"].lower()
        for part in ("httponly", "secure", "samesite=lax", "path=/console"):
            assert part in cookie
        assert env.server.token not in r.headers["set-cookie"]
        page = await c.get("/console/")
        assert page.status_code == 200 and "console.js" in page.text
        assert "script-src 'self'" in page.headers["content-security-policy"]
        for method, path in guarded_routes(env):
            if method == "GET" and path.startswith("/console/api/") and "/x" not in path \
                    and "no-such" not in path:
                assert (await c.get(path)).status_code == 200, path
        assert (await c.get("/console/session")).json()["user"] == "clrk-admin"
        assert (await c.get("/console/api/overview?window=2d")).status_code == 400
        r = await c.post("/console/logout")
        assert r.status_code == 303
        assert (await c.get("/console/api/overview")).status_code == 401


async def test_a_one_time_link_logs_in_once(env: Env) -> None:
    async with client(env) as c:
        assert (await c.post("/console/login-links",
                             headers={"Authorization": "Bearer wrong"})).status_code == 401
        r = await c.post("/console/login-links",
                         headers={"Authorization": f"Bearer {env.server.token}"})
        assert r.status_code == 200
        path = r.json()["path"]
        assert (await c.get(path)).status_code == 303
        assert (await c.get("/console/api/workers")).status_code == 200
    async with client(env) as other:  # the same link again, from another browser
        assert (await other.get(path)).status_code == 401
        assert (await other.get("/console/api/workers")).status_code == 401
    # `clrk console` asks for a link with the kubeconfig's credentials and prints it.
    out = await asyncio.to_thread(subprocess.run, [
        CLRK, "--kubeconfig", str(env.data / "kubeconfig"), "console", "--no-browser"],
        capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    url = out.stdout.strip()
    assert url.startswith(f"{env.server.url}/console/login?code=")
    async with client(env) as c:
        assert (await c.get(url)).status_code == 303
        assert (await c.get("/console/session")).status_code == 200


async def test_clrk_console_opens_the_link_in_a_browser(env: Env, tmp_path: Path) -> None:
    """Where there is a display, `clrk console` opens the link it prints in the user's
    browser ($BROWSER, as Python's webbrowser reads it; here a script that keeps the URL
    it was given); without one it only prints it."""
    opened = tmp_path / "opened"
    browser = tmp_path / "browser"
    browser.write_text(f"#!/bin/sh\nprintf %s \"$1\" > {opened}.part && "
                       f"mv {opened}.part {opened}\n")
    browser.chmod(0o755)
    command = [CLRK, "--kubeconfig", str(env.data / "kubeconfig"), "console"]
    base = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    out = await asyncio.to_thread(subprocess.run, command, capture_output=True, text=True,
                                  timeout=60, env={**base, "BROWSER": f"{browser} %s"})
    assert out.returncode == 0, out.stderr
    await asyncio.sleep(1)
    assert not opened.exists()  # no display: printed only
    out = await asyncio.to_thread(subprocess.run, command, capture_output=True, text=True,
                                  timeout=60, env={**base, "DISPLAY": ":99",
                                                   "BROWSER": f"{browser} %s"})
    assert out.returncode == 0, out.stderr
    url = out.stdout.strip()
    for _ in range(100):  # the browser is started, not waited for
        if opened.exists():
            break
        await asyncio.sleep(0.1)
    assert opened.read_text() == url
    async with client(env) as c:
        assert (await c.get(url)).status_code == 303


def llm_call(invocation: str, trace: str, parent: str, provider: str, model: str,
             usage: Usage) -> dict[str, Any]:
    """A call as a worker reports it: usage read by the gateway, billed_as, attributed."""
    return {"kind": "http", "start_time": NOW.isoformat(), "duration_ms": 420,
            "name": f"POST {provider}.example/v1/messages",
            "attributes": {**usage.attributes(200), "gen_ai.provider.name": provider,
                           "gen_ai.request.model": model, "clrk.decision": "allow",
                           "server.address": f"api.{provider}.com",
                           **billed_as(provider, model)},
            "attribution": {"namespace": "default", "agentKind": "TaskAgent",
                            "agentName": "spender", "invocation": invocation,
                            "traceId": trace, "spanId": parent}}


def denied_connection(invocation: str, trace: str, parent: str) -> dict[str, Any]:
    return {"kind": "tcp", "start_time": NOW.isoformat(), "duration_ms": 1,
            "destination": "203.0.113.9:443", "sni": "exfil.example", "cluster": "clrk_deny",
            "attribution": {"namespace": "default", "agentKind": "TaskAgent",
                            "agentName": "spender", "invocation": invocation,
                            "traceId": trace, "spanId": parent}}


async def test_the_api_adds_up_what_was_recorded(env: Env) -> None:
    await env.client.create(agent("spender"))
    ledger, store = env.server.ledger, env.server.ledger.store
    started = ledger.begin("default", "TaskAgent", "spender", revision=None,
                           trigger="api", execution_id="e1")
    ledger.transition("default", started.name, "Running")
    calls = [
        # claude-haiku-4-5 with cache reads and writes; o4-mini with cached and reasoning
        # tokens inside its counts; a model without a price.
        ("anthropic", "claude-haiku-4-5", Usage(input_tokens=1_000, output_tokens=2_000,
                                                cache_read_input_tokens=10_000,
                                                cache_creation_input_tokens=4_000)),
        ("openai", "o4-mini", Usage(input_tokens=10_000, output_tokens=3_000,
                                    cache_read_input_tokens=8_000,
                                    reasoning_output_tokens=2_000)),
        ("anthropic", "claude-unreleased", Usage(input_tokens=7, output_tokens=7)),
    ]
    items = [llm_call(started.name, started.trace_id, started.span_id, *c) for c in calls]
    items.append(denied_connection(started.name, started.trace_id, started.span_id))
    connections.record(store, "default", "gw", items)
    ledger.finish("default", started.name, "Succeeded", exitCode=0)
    haiku = Decimal("0.001") + Decimal("0.010") + Decimal("0.001") + Decimal("0.005")
    o4 = Decimal("0.0022") + Decimal("0.0132") + Decimal("0.0022")
    async with client(env) as c:
        assert (await login(c, env.server.token)).status_code == 303
        spend = (await c.get("/console/api/spend?window=1h")).json()
        by_model = {r["model"]: r for r in spend["byModel"]}
        assert Decimal(by_model["claude-haiku-4-5"]["costUSD"]) == haiku
        assert by_model["claude-haiku-4-5"]["cacheReadTokens"] == 10_000
        assert by_model["claude-haiku-4-5"]["cacheWriteTokens"] == 4_000
        assert Decimal(by_model["o4-mini"]["costUSD"]) == o4
        assert by_model["o4-mini"]["reasoningTokens"] == 2_000
        assert by_model["claude-unreleased"]["unpricedCalls"] == 1
        assert by_model["claude-unreleased"]["costUSD"] == "0"
        assert Decimal(spend["totals"]["costUSD"]) == haiku + o4
        assert spend["totals"]["unpricedCalls"] == 1
        assert spend["byAgent"][0]["agentName"] == "spender"
        overview = (await c.get("/console/api/overview?window=1h")).json()
        assert overview["totals"]["invocations"] == 1
        assert overview["totals"]["denied"] == 1
        assert overview["topAgents"][0]["name"] == "spender"
        page = (await c.get(f"/console/api/invocations/default/{started.name}")).json()
        kinds = sorted(s["kind"] for s in page["spans"])
        assert kinds == ["invocation", "llm", "llm", "llm", "tcp"]
        denied = next(s for s in page["spans"] if s["kind"] == "tcp")
        assert denied["decision"] == "deny" and "deny-all" in denied["reason"]
        assert all(s["parentSpanId"] == started.span_id for s in page["spans"]
                   if s["kind"] != "invocation")
        unpriced = next(s for s in page["spans"] if s["model"] == "claude-unreleased")
        assert unpriced["unpriced"] is True
        detail = (await c.get(f"/console/api/spans/{started.trace_id}/"
                              f"{unpriced['spanId']}")).json()
        assert detail["attributes"]["clrk.cost.priced"] == "false"
        hosts = (await c.get("/console/api/egress?window=1h")).json()["hosts"]
        assert {(h["host"], h["decision"]) for h in hosts} >= {
            ("exfil.example", "deny"), ("api.openai.com", "allow")}
        agent_page = (await c.get("/console/api/agents/default/TaskAgent/spender")).json()
        assert agent_page["invocations"][0]["name"] == started.name
        assert Decimal(agent_page["stats"]["costUSD"]) == haiku + o4
        assert "kind: TaskAgent" in agent_page["yaml"]

        # A ModelPrice written now prices the calls recorded after it.
        await env.client.create(ModelPriceResource.from_dict({
            "apiVersion": "clrk.apoxy.dev/v1alpha1", "kind": "ModelPrice",
            "metadata": {"name": "claude-unreleased"},
            "spec": {"provider": "anthropic", "model": "claude-unreleased", "input": "1000",
                     "output": "1000"}}))
        r = await c.post("/apis/clrk.apoxy.dev/v1alpha1/namespaces/default/egressgateways/"
                         "gw/connections", json={"items": [items[2]]},
                         headers={"Authorization": f"Bearer {env.server.token}"})
        assert r.json()["stored"] == 1
        spend = (await c.get("/console/api/spend?window=1h")).json()
        row = {r["model"]: r for r in spend["byModel"]}["claude-unreleased"]
        assert (row["calls"], row["unpricedCalls"], Decimal(row["costUSD"])) == (
            2, 1, Decimal("0.014"))
        prices = (await c.get("/console/api/prices")).json()["items"]
        assert prices[0] == {"source": "ModelPrice", "provider": "anthropic",
                             "model": "claude-unreleased", "input": "1000", "output": "1000",
                             "cacheRead": None, "cacheWrite": None, "reasoning": None}

    # `clrk agents get` shows the agent's cost and each recent invocation's.
    out = await asyncio.to_thread(subprocess.run, [
        CLRK, "--kubeconfig", str(env.data / "kubeconfig"), "agents", "get", "spender"],
        capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "last 24 h:   1 invocations (0 failed)" in out.stdout
    assert f"${haiku + o4 + Decimal('0.014')}" in out.stdout
    assert "unpriced call(s)" in out.stdout and "1 denied egress" in out.stdout
    # `clrk agents traces` shows each call's cost, or that it is unpriced.
    out = await asyncio.to_thread(subprocess.run, [
        CLRK, "--kubeconfig", str(env.data / "kubeconfig"), "agents", "traces", "spender"],
        capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert any("claude-haiku-4-5" in ln and ln.endswith(f"${haiku}") for ln in lines), lines
    assert any("o4-mini" in ln and ln.endswith(f"${o4}") for ln in lines), lines
    assert any("claude-unreleased" in ln and ln.endswith("unpriced") for ln in lines), lines
    assert any("claude-unreleased" in ln and ln.endswith("$0.014") for ln in lines), lines


@pytest.mark.parametrize("bad", [{"input": "free"}, {"provider": "acme"}])
async def test_a_bad_model_price_is_refused_by_name(env: Env, bad: dict[str, str]) -> None:
    from lightkube import ApiError
    spec = {"provider": "openai", "model": "gpt-x", "input": "1", "output": "1", **bad}
    with pytest.raises(ApiError) as err:
        await env.client.create(ModelPriceResource.from_dict({
            "apiVersion": "clrk.apoxy.dev/v1alpha1", "kind": "ModelPrice",
            "metadata": {"name": "bad"}, "spec": spec}))
    assert err.value.status.code == 422
    assert next(iter(bad)) in (err.value.status.message or "")
