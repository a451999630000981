"""A hostile agent asks an upstream to echo its request back: the credential the gateway
injected must not reach it that way. From inside a real sandbox, through the real
Envoy and policy service, to a fake upstream that echoes the request's headers and
body and the key in base64 (in the body, inside a larger base64 blob, and in response
headers), on every path: Envoy alone metering a provider call, the policy service
(JSON and SSE), and Envoy alone with credential_injector (JSON and SSE). What the agent
reads holds none of it, and each span records the scrub. CONNECT to a terminated host,
in clear or inside its TLS, is answered with 405 at once."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest

from tests.conftest import DevServer
from tests.e2e.test_ai_egress import (
    G,
    ai_route,
    apply,
    assert_nowhere,
    dev_trusting,
    http_spans,
    invoke,
    poll,
    provider_gateway,
    task,
    until,
)
from tests.fake_providers import FakeProviders, serving
from tests.images import Registry

pytestmark = pytest.mark.e2e
KEYS = {"api.anthropic.com": "sk-ant-scrub-9d8c7b6a5f4e",  # metered by Envoy
        "api.openai.com": "sk-openai-scrub-1f2e3d4c",  # the policy service (models named)
        "api.github.com": "ghp-scrub-token-6b5a4f3e"}  # an EgressL4Route, Envoy alone


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeProviders]:
    yield from serving(KEYS)


@pytest.fixture(scope="module")
def dev(registry: Registry, fake: FakeProviders,
        tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevServer]:
    yield from dev_trusting(registry, fake, tmp_path_factory, "scrub")


AGENT = r"""
import json, socket, ssl, sys, urllib.request

def call(label, url, body=None, headers=None):
    req = urllib.request.Request(url, data=body and json.dumps(body).encode(),
                                 headers={"content-type": "application/json",
                                          "accept-encoding": "gzip", **(headers or {})})
    with urllib.request.urlopen(req, timeout=30) as r:
        print(json.dumps({"label": label, "status": r.status, "headers": r.getheaders(),
                          "body": r.read().decode("utf-8", "replace")}), flush=True)

def connect(label, host, tls):
    sock = socket.create_connection((host, 443), timeout=20)  # a hang fails the test
    if tls:
        sock = ssl.create_default_context().wrap_socket(sock, server_hostname=host)
    sock.sendall(b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n")
    print(json.dumps({"label": label, "status": int(sock.recv(4096).split()[1]),
                      "headers": [], "body": ""}), flush=True)

echo = {"model": "claude-x", "max_tokens": 5, "echo": True}
call("metered", "https://api.anthropic.com/v1/messages", echo)
call("metered-sse", "https://api.anthropic.com/v1/messages", {**echo, "stream": True})
chat = {"model": "gpt-x", "messages": [], "echo": True}
call("python", "https://api.openai.com/v1/chat/completions", chat)
call("python-sse", "https://api.openai.com/v1/chat/completions", {**chat, "stream": True})
call("native", "https://api.github.com/user/echo")
call("native-sse", "https://api.github.com/events/echo", None,
     {"accept": "text/event-stream"})
connect("connect-tls", "api.anthropic.com", True)
connect("connect-clear", "api.github.com", False)
"""


def forbidden(value: str) -> list[str]:
    raw = value.encode()
    return [value, quote(value, safe=""), base64.b64encode(raw).decode(),
            base64.b64encode(raw).decode().rstrip("="), base64.urlsafe_b64encode(raw).decode()]


def test_an_echoing_upstream_never_hands_the_agent_its_credential(
        dev: DevServer, registry: Registry, fake: FakeProviders) -> None:
    dev.kubectl("create", "secret", "generic", "scrub-keys",
                *(f"--from-literal={h.split('.')[1]}={v}" for h, v in KEYS.items()))

    def credential(name: str, kind: str, route: str, key: str, header: str,
                   prefix: str = "") -> dict[str, Any]:
        spec = {"targetRef": {"kind": kind, "name": route},
                "secretRef": {"name": "scrub-keys"}, "secretKey": key, "target": "Header",
                "headerName": header, **({"valuePrefix": prefix} if prefix else {})}
        return {"apiVersion": G, "kind": "CredentialInjectionPolicy",
                "metadata": {"name": name}, "spec": spec}

    gw = provider_gateway("scrub-gw", fake)
    gw["spec"]["upstreamTLS"]["hostAliases"].append(
        {"hostname": "api.github.com", "address": f"127.0.0.1:{fake.port}"})
    github = {"apiVersion": G, "kind": "EgressL4Route", "metadata": {"name": "scrub-github"},
              "spec": {"parentRefs": [{"name": "scrub-gw"}], "rules": [{"matches": [
                  {"destinationHostnames": ["api.github.com"], "ports": [{"port": 443}]}]}]}}
    openai = ai_route("scrub-openai", "scrub-gw", "openai")
    openai["spec"]["rules"][0]["matches"][0]["models"] = ["gpt-*"]  # Python decides
    agent = task("scrub-user", "scrub-gw", f"{registry.host}/test/python:1", AGENT)
    apply(dev, gw, github, openai, ai_route("scrub-anthropic", "scrub-gw", "anthropic"),
          credential("scrub-anthropic", "AIProviderRoute", "scrub-anthropic", "anthropic",
                     "x-api-key"),
          credential("scrub-openai", "AIProviderRoute", "scrub-openai", "openai",
                     "authorization", "Bearer "),
          credential("scrub-github", "EgressL4Route", "scrub-github", "github",
                     "authorization", "Bearer "),
          agent)
    until(lambda: dev.kubectl("get", "egressgateway", "scrub-gw", "-o",
                              "jsonpath={.status.caSecretName}").stdout, "no CA yet")
    r = poll(lambda: invoke(dev, "scrub-user"),
             lambda r: r.status_code == 200 and "connect-clear" in r.text,
             "the agent never finished")
    got = {d["label"]: d for d in map(json.loads, r.text.splitlines()) if d}
    for label in ("metered", "metered-sse", "python", "python-sse", "native", "native-sse"):
        answer = got[label]
        assert answer["status"] == 200, answer
        headers = {k.lower(): v for k, v in answer["headers"]}
        assert headers["x-echo"] == "1", answer  # the upstream did echo the request
        assert headers["x-echo-credential"].startswith("[redacted]"), headers
        assert "[redacted]" in answer["body"] and "credential_b64" in answer["body"]
        if label.endswith("-sse"):
            assert headers["content-type"] == "text/event-stream"
    text = r.text
    for value in KEYS.values():
        for form in forbidden(value):
            assert form not in text, form
    assert got["connect-tls"]["status"] == 405 and got["connect-clear"]["status"] == 405
    # The keys did reach the upstream, each where its policy puts it.
    assert {s.headers["host"]: s.headers.get("x-api-key") or s.headers["authorization"]
            for s in fake.seen if s.headers.get("host") in KEYS} == {
        "api.anthropic.com": KEYS["api.anthropic.com"],
        "api.openai.com": f"Bearer {KEYS['api.openai.com']}",
        "api.github.com": f"Bearer {KEYS['api.github.com']}"}

    def recorded() -> list[dict[str, Any]]:
        found = [s for s in http_spans(dev, "TaskAgent", "scrub-user")
                 if s["attributes"].get("clrk.egress.scrubbed")]
        return found if len(found) >= 6 else []

    spans = until(recorded, "not every scrub was recorded")
    by = {(s["attributes"]["server.address"], s["attributes"].get("clrk.metered_by", "")):
          int(s["attributes"]["clrk.egress.scrubbed"]) for s in spans}
    assert set(by) == {("api.anthropic.com", "envoy"), ("api.anthropic.com", ""),
                       ("api.openai.com", ""), ("api.github.com", "")}, by
    assert all(n >= 3 for n in by.values()), by

    def connects() -> list[dict[str, Any]]:
        found = [s for s in http_spans(dev, "TaskAgent", "scrub-user")
                 if s["attributes"]["http.request.method"] == "CONNECT"]
        return found if len(found) >= 2 else []

    refused = until(connects, "the refused CONNECTs were not recorded")
    assert {s["attributes"]["server.address"] for s in refused} == \
        {"api.anthropic.com", "api.github.com"}
    assert all(s["attributes"]["clrk.decision"] == "deny" and
               s["attributes"]["http.response.status_code"] == "405" for s in refused)
    assert_nowhere(dev, KEYS["api.anthropic.com"], [("TaskAgent", "scrub-user")])
