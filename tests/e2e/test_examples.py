"""Every example under examples/, as its README runs it: the image built from its
Dockerfile by `clrk image build` and pushed to `clrk dev`'s registry, its manifests
applied with kubectl, then what the README promises, asserted. The base image
(``python:3.12-slim``) comes from `clrk image import`, as on a machine without
internet; the providers and the MCP server are local fakes speaking the real wire
formats, which each gateway reaches through ``upstreamTLS.hostAliases`` (the one
change the tests make to the example manifests, besides the registry's port)."""

from __future__ import annotations

import asyncio
import base64
import json
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.conftest import ROOT, DevServer, remove_image_store, start_dev
from tests.fake_providers import FakeMCP, FakeProviders, OTLPCapture, serving
from tests.images import oci_layout, python_slim_stand_in

pytestmark = pytest.mark.e2e
EXAMPLES = ROOT / "examples"
G = "clrk.apoxy.dev/v1alpha1"
KEYS = {"api.anthropic.com": "sk-ant-example-5c2e", "api.openai.com": "sk-openai-example-9d1f",
        "generativelanguage.googleapis.com": "AIza-example-77ab"}


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeProviders]:
    yield from serving(KEYS)


@pytest.fixture(scope="module")
def dev(tmp_path_factory: pytest.TempPathFactory, fake: FakeProviders) -> Iterator[DevServer]:
    """`clrk dev` with its registry and one worker; the base image imported; the fake
    providers' CA in the Secret `provider-ca`; the keys in the Secrets the READMEs
    tell the user to create."""
    work = tmp_path_factory.mktemp("examples")
    server = start_dev(work / "clrk", workers=1)
    try:
        server.wait_for_worker()
        layout = oci_layout(python_slim_stand_in(), work / "python-slim", "3.12-slim")
        server.image("import", str(layout), "--name", "python:3.12-slim")
        (work / "ca.crt").write_bytes(fake.ca.cert_pem)
        server.kubectl("create", "secret", "generic", "provider-ca",
                       f"--from-file=ca.crt={work / 'ca.crt'}")
        for secret, host in (("anthropic-credentials", "api.anthropic.com"),
                             ("openai-credentials", "api.openai.com"),
                             ("gemini-credentials", "generativelanguage.googleapis.com")):
            server.kubectl("create", "secret", "generic", secret,
                           f"--from-literal=api-key={KEYS[host]}")
        yield server
    finally:
        server.stop()
        remove_image_store(server.data_dir)


def build(dev: DevServer, example: str, tag: str | None = None) -> None:
    """The README's `clrk image build -t <example>:0.1 --push examples/<example>`."""
    out = dev.image("build", "-t", f"{tag or example}:0.1", "--push",
                    str(EXAMPLES / example)).stdout
    assert f"pushed {dev.registry}/{tag or example}:0.1" in out, out


def manifests(dev: DevServer, example: str, aliases: dict[str, int]) -> list[dict[str, Any]]:
    """The example's manifests as the README applies them, with the dev registry's
    port, and each gateway sending ``aliases``' hosts to local ports (trusting the
    fakes' CA)."""
    docs = []
    for path in sorted((EXAMPLES / example / "manifests").glob("*.yaml")):
        text = path.read_text().replace("127.0.0.1:5001/", f"{dev.registry}/")
        docs += [d for d in yaml.safe_load_all(text) if d]
    for doc in docs:
        if doc["kind"] == "EgressGateway" and aliases:
            doc["spec"]["upstreamTLS"] = {
                "hostAliases": [{"hostname": h, "address": f"127.0.0.1:{port}"}
                                for h, port in aliases.items()],
                "additionalTrustBundleSecretRef": {"name": "provider-ca", "key": "ca.crt"}}
    return docs


def apply(dev: DevServer, docs: list[dict[str, Any]]) -> None:
    dev.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(docs))


def providers(fake: FakeProviders, *hosts: str) -> dict[str, int]:
    return dict.fromkeys(hosts, fake.port)


def run_task(dev: DevServer, name: str, data: dict[str, Any]) -> httpx.Response:
    return httpx.post(f"{dev.ingress}/", json=data, timeout=180,
                      headers={"X-Clrk-TaskAgent": f"default/{name}"})


def answered(dev: DevServer, name: str, data: dict[str, Any],
             timeout: float = 60) -> dict[str, Any]:
    """The task's JSON answer, once it gives one (a worker may take a moment to see a
    new gateway's routes: the first execution can be refused)."""
    deadline = time.monotonic() + timeout
    while True:
        r = run_task(dev, name, data)
        if r.status_code == 200:
            return dict(json.loads(r.text))
        assert time.monotonic() < deadline, (r.status_code, r.text[-2000:])
        time.sleep(1)


def until(check: Callable[[], Any], what: str, timeout: float = 90) -> Any:
    deadline = time.monotonic() + timeout
    while not (got := check()):
        assert time.monotonic() < deadline, what
        time.sleep(0.5)
    return got


def traces(dev: DevServer, kind: str, name: str) -> list[dict[str, Any]]:
    plural = {"TaskAgent": "taskagents", "DaemonAgent": "daemonagents"}[kind]
    out = dev.kubectl("get", "--raw",
                      f"/apis/{G}/namespaces/default/{plural}/{name}/traces").stdout
    return list(json.loads(out)["items"])


def logs(dev: DevServer, name: str) -> str:
    return dev.clrk("agents", "logs", name).stdout


@pytest.fixture(scope="module", autouse=True)
def cron_bot(dev: DevServer) -> float:
    """Applied before the other examples run, so its minute passes meanwhile."""
    build(dev, "cron-bot")
    apply(dev, manifests(dev, "cron-bot", {}))
    return time.monotonic()


def test_echo_bot_never_holds_its_key(dev: DevServer, fake: FakeProviders) -> None:
    """The quickstart's image: its calls answered with the key the gateway injected, the
    key nowhere the agent or clrk's records can show it, each call recorded and exported
    to the gateway's OTLP endpoint (here a local collector)."""
    collector = OTLPCapture()
    try:
        fake.replies["claude-haiku-4-5"] = "Hello! Nice to meet you."
        build(dev, "echo-bot")
        docs = manifests(dev, "echo-bot", providers(fake, "api.anthropic.com"))
        for doc in docs:
            if doc["kind"] == "EgressGateway":
                doc["spec"]["otlp"]["endpoint"] = collector.url
        apply(dev, docs)
        out = until(lambda: (lambda text: text if "Hello! Nice to meet you." in text else "")(
            logs(dev, "echo-bot")), "the agent never printed an answer")
        assert any(line.startswith("200 ") and "Hello! Nice" in line
                   for line in out.splitlines()), out
        key = KEYS["api.anthropic.com"]
        calls = [s for s in fake.seen if (s.json() or {}).get("messages") == [
            {"role": "user", "content": "Say hello."}]]
        assert calls and {c.headers["x-api-key"] for c in calls} == {key}
        spans = until(lambda: [s for s in traces(dev, "DaemonAgent", "echo-bot")
                               if s["attributes"].get("http.response.status_code") == "200"],
                      "no span of an answered call")
        request = next(e for e in spans[0]["events"] if e["name"] == "http.request")
        assert request["attributes"]["http.request.header.x-api-key"] == "[redacted]"
        assert spans[0]["attributes"]["gen_ai.usage.output_tokens"] == "24"
        until(lambda: any(s["name"].startswith("POST") for s in collector.spans()),
              "no call was exported over OTLP")
        assert key not in out + json.dumps(traces(dev, "DaemonAgent", "echo-bot"))
        assert not any(key.encode() in body for _, _, body in collector.received)
        dev.kubectl("delete", "daemonagent", "echo-bot")  # it calls every 5 s
    finally:
        collector.stop()


def test_openai_bot_without_a_gateway_is_audited(dev: DevServer) -> None:
    """No gateway: the daemon runs, its SDK call never leaves the sandbox, and each
    attempt (the refused lookup of api.openai.com) is recorded against the agent. Then
    its rollback by a revision pin, and back."""
    build(dev, "openai-bot")
    apply(dev, manifests(dev, "openai-bot", {}))
    dev.kubectl("wait", "daemonagent/openai-bot", "--for=jsonpath={.status.phase}=Running",
                "--timeout=120s", timeout=130)
    until(lambda: "call failed:" in logs(dev, "openai-bot"), "the call never failed")
    lookups = until(lambda: [s for s in traces(dev, "DaemonAgent", "openai-bot")
                             if "api.openai.com" in json.dumps(s)], "no lookup recorded")
    assert all("refused" in json.dumps(s) or "deny" in json.dumps(s) for s in lookups), \
        lookups
    assert "answer:" not in logs(dev, "openai-bot")
    shown = dev.clrk("agents", "traces", "openai-bot").stdout
    assert "api.openai.com" in shown, shown

    # Rollback of a DaemonAgent is a revision pin too: a new template (-00002) runs,
    # then the pin brings -00001 back (the daemon restarted on it), unpinned -00002.
    def runs_on(revision: str) -> None:
        dev.kubectl("wait", "daemonagent/openai-bot", "--timeout=120s",
                    f"--for=jsonpath={{.status.servingRevisionName}}={revision}",
                    timeout=130)

        def running() -> list[tuple[str, str]]:
            items = json.loads(dev.kubectl("get", "invocations", "-o", "json").stdout)["items"]
            return [(i["metadata"]["name"], str(i["spec"].get("revision")))
                    for i in items if i["spec"]["agentName"] == "openai-bot"
                    and (i.get("status") or {}).get("phase") == "Running"]

        deadline = time.monotonic() + 90
        while [rev for _, rev in running()] != [revision]:  # one run, on that revision
            assert time.monotonic() < deadline, (revision, running())
            time.sleep(0.5)

    dev.kubectl("patch", "daemonagent", "openai-bot", "--type", "json", "-p", json.dumps(
        [{"op": "replace", "path": "/spec/template/spec/env/0/value", "value": "12"}]))
    runs_on("openai-bot-00002")
    dev.kubectl("patch", "daemonagent", "openai-bot", "--type", "merge", "-p",
                '{"spec": {"pinnedRevisionName": "openai-bot-00001"}}')
    runs_on("openai-bot-00001")
    row = dev.kubectl("get", "daemonagent", "openai-bot").stdout.splitlines()
    assert "PINNED" in row[0] and "openai-bot-00001" in row[1], row
    dev.kubectl("patch", "daemonagent", "openai-bot", "--type", "json", "-p",
                '[{"op": "remove", "path": "/spec/pinnedRevisionName"}]')
    runs_on("openai-bot-00002")


def test_openai_bot_through_a_terminating_gateway(dev: DevServer,
                                                  fake: FakeProviders) -> None:
    """The same image behind a TLS-terminating gateway: the key injected (the agent
    sent a placeholder), the answer reaches the agent, and the call is recorded with
    its tokens and both bodies, the credential redacted."""
    fake.replies["gpt-4o-mini"] = "Sandboxes hold / the agent's reach, not its thought"
    build(dev, "openai-bot")  # cached: the README builds it once for both examples
    apply(dev, manifests(dev, "openai-bot-mitm", providers(fake, "api.openai.com")))
    until(lambda: "answer: Sandboxes hold" in logs(dev, "openai-bot-mitm"),
          "the agent never got its answer")
    assert "(tokens: 18)" in logs(dev, "openai-bot-mitm")
    seen = [s for s in fake.seen if s.headers.get("host") == "api.openai.com"
            and (s.json() or {}).get("model") == "gpt-4o-mini"]
    assert seen and {s.headers["authorization"] for s in seen} == \
        {f"Bearer {KEYS['api.openai.com']}"}
    span = until(lambda: [s for s in traces(dev, "DaemonAgent", "openai-bot-mitm")
                          if s["attributes"].get("http.response.status_code") == "200"],
                 "no span of the call")[0]
    attrs = span["attributes"]
    assert (attrs["gen_ai.provider.name"], attrs["gen_ai.request.model"],
            attrs["gen_ai.usage.input_tokens"]) == ("openai", "gpt-4o-mini", "13")
    request = next(e for e in span["events"] if e["name"] == "http.request")["attributes"]
    response = next(e for e in span["events"] if e["name"] == "http.response")["attributes"]
    assert request["http.request.header.authorization"] == "[redacted]"
    assert json.loads(base64.b64decode(request["http.request.body"]))["model"] == "gpt-4o-mini"
    assert "Sandboxes hold" in base64.b64decode(response["http.response.body"]).decode()
    assert KEYS["api.openai.com"] not in json.dumps(
        traces(dev, "DaemonAgent", "openai-bot-mitm")) + logs(dev, "openai-bot-mitm")


def test_gemini_bot_gets_its_key_as_x_goog_api_key(dev: DevServer,
                                                   fake: FakeProviders) -> None:
    fake.replies["gemini-2.5-flash"] = "A bucket and a spade."
    build(dev, "gemini-bot")
    apply(dev, manifests(dev, "gemini-bot",
                         providers(fake, "generativelanguage.googleapis.com")))
    got = answered(dev, "gemini-bot", {"prompt": "Name a sandbox toy."})
    assert got == {"answer": "A bucket and a spade.", "tokens": 13}, got
    seen = [s for s in fake.seen if "gemini-2.5-flash" in s.path][-1]
    assert seen.headers["x-goog-api-key"] == KEYS["generativelanguage.googleapis.com"]
    span = until(lambda: [s for s in traces(dev, "TaskAgent", "gemini-bot")
                          if s["attributes"].get("gen_ai.provider.name") == "google"],
                 "no span of the call")[-1]
    assert span["attributes"]["gen_ai.usage.output_tokens"] == "4"


def test_jq_bot_runs_real_jq_on_the_filter_the_llm_wrote(dev: DevServer,
                                                         fake: FakeProviders) -> None:
    fake.replies["claude-haiku-4-5"] = "[.items[] | select(.price > 2)] | length"
    build(dev, "jq-bot")
    apply(dev, manifests(dev, "jq-bot", providers(fake, "api.anthropic.com")))
    question = {"question": "How many items cost more than 2?",
                "input": {"items": [{"price": 1}, {"price": 3}, {"price": 5}]}}
    got = answered(dev, "jq-bot", question)
    assert got == {"filter": "[.items[] | select(.price > 2)] | length", "result": 2}, got
    asked = [s.json() for s in fake.seen if (s.json() or {}).get("system", "").startswith(
        "Answer with one jq filter")][-1]
    assert '"price": 3' in asked["messages"][0]["content"]
    # A filter jq rejects: the execution fails, saying why.
    fake.replies["claude-haiku-4-5"] = ".items[ | oops"
    r = run_task(dev, "jq-bot", question)
    assert r.status_code == 500 and r.headers["x-clrk-exit-code"] == "2", r.text
    assert "jq rejected the filter '.items[ | oops'" in logs(dev, "jq-bot")


def test_cross_provider_jq_translates_for_the_openai_backend(
        dev: DevServer, fake: FakeProviders) -> None:
    """The jq-bot image (the anthropic SDK, streaming) split 50/50 between an Anthropic
    and an OpenAI Backend: every answer reads as Anthropic's, the OpenAI calls went out
    as Chat Completions streams with OpenAI's key, and the spans name the Backend and
    count the tokens from its own answer."""
    fake.replies["claude-haiku-4-5"] = ".items | length"
    fake.replies["gpt-4o-mini"] = ".items | length"
    build(dev, "jq-bot")
    apply(dev, manifests(dev, "cross-provider-jq",
                         providers(fake, "api.anthropic.com", "api.openai.com")))
    before = len(fake.seen)
    question = {"question": "How many items?", "input": {"items": [1, 2, 3]}}
    for _ in range(12):  # both Backends, but for a chance of 1 in 2,048
        assert answered(dev, "cross-provider-jq", question) == {
            "filter": ".items | length", "result": 3}
    seen = fake.seen[before:]
    def jq(s: Any) -> bool:  # not openai-bot-mitm's calls, which go on meanwhile
        return "Answer with one jq filter" in s.body.decode(errors="replace")

    to_openai = [s for s in seen if s.path == "/v1/chat/completions" and jq(s)]
    to_anthropic = [s for s in seen if s.path == "/v1/messages" and jq(s)]
    assert to_openai and to_anthropic, [s.path for s in seen]
    for call in to_openai:
        doc = call.json()
        assert call.headers["host"] == "api.openai.com"
        assert call.headers["authorization"] == f"Bearer {KEYS['api.openai.com']}"
        assert "x-api-key" not in call.headers and "anthropic-version" not in call.headers
        assert (doc["model"], doc["stream"], doc["stream_options"]) == (
            "gpt-4o-mini", True, {"include_usage": True})
        assert doc["messages"][0]["role"] == "system"
    assert {s.headers["x-api-key"] for s in to_anthropic} == {KEYS["api.anthropic.com"]}
    spans = until(lambda: (lambda found: found if len(found) >= 12 else [])(
        [s for s in traces(dev, "TaskAgent", "cross-provider-jq")
         if s["attributes"].get("clrk.backend")]), "not every call has a span")
    gpt = [s["attributes"] for s in spans if s["attributes"]["clrk.backend"] == "jq-gpt"]
    assert gpt and all(a["clrk.backend.schema"] == "openai" and a["gen_ai.usage.input_tokens"]
                       == "13" and a["gen_ai.usage.output_tokens"] == "5" for a in gpt), gpt
    assert all(a["gen_ai.provider.name"] == "anthropic" for a in gpt)  # the agent's API


def test_model_router_rewrites_and_splits(dev: DevServer, fake: FakeProviders) -> None:
    """Asked for opus 100 times: the cheap Backend (about 90 %) sent haiku upstream, the
    premium one (about 10 %) opus; each span names its Backend."""
    build(dev, "model-router")
    apply(dev, manifests(dev, "model-router", providers(fake, "api.anthropic.com")))
    got = answered(dev, "model-router", {"n": 100, "model": "claude-opus-4-1"}, timeout=120)
    served = got["served"]
    assert set(served) == {"claude-haiku-4-5", "claude-opus-4-1"}, got
    assert sum(served.values()) == 100 and 60 <= served["claude-haiku-4-5"] <= 99, got
    spans = until(lambda: [s for s in traces(dev, "TaskAgent", "model-router")
                           if s["attributes"].get("clrk.backend")], "no span")
    backends = {s["attributes"]["clrk.backend"] for s in spans}
    assert backends == {"claude-cheap", "claude-premium"}, backends
    cheap = [s for s in spans if s["attributes"]["clrk.backend"] == "claude-cheap"]
    assert {s["attributes"]["clrk.backend.model"] for s in cheap} == {"claude-haiku-4-5"}
    assert {s["attributes"]["gen_ai.request.model"] for s in spans} == {"claude-opus-4-1"}


def test_fallback_router_goes_on_past_a_dead_primary(dev: DevServer,
                                                     fake: FakeProviders) -> None:
    """The primary Backend refuses every connection (nothing listens on its port): each
    call is retried on the fallback Backend, with that Backend's Host, and succeeds."""
    dead = socket.create_server(("127.0.0.1", 0))
    dead_port = int(dead.getsockname()[1])
    dead.close()  # nothing listens there now: connections are refused
    build(dev, "fallback-router")
    apply(dev, manifests(dev, "fallback-router", {
        "llm-primary.internal.example.com": dead_port, "api.anthropic.com": fake.port}))
    before = len(fake.seen)
    got = answered(dev, "fallback-router", {"n": 5})
    assert got == {"statuses": [200] * 5}, got
    served = [s for s in fake.seen[before:] if (s.json() or {}).get("model") ==
              "claude-haiku-4-5"]
    assert len(served) >= 5 and {s.headers["host"] for s in served} == {"api.anthropic.com"}
    assert {s.headers["x-api-key"] for s in served} == {KEYS["api.anthropic.com"]}
    # Without the policy, the dead primary's refusal reaches the agent.
    dev.kubectl("delete", "fallbackroutingpolicy", "fallback-router")
    until(lambda: run_task(dev, "fallback-router", {"n": 1}).text.strip()
          == '{"statuses": [503]}', "the policy's removal never applied", timeout=60)


class FakePostgres:
    """Answers PostgreSQL's SSLRequest with "N" (no TLS), as a server without TLS does."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.sock.getsockname()[1])
        self.requests: list[bytes] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                self.requests.append(conn.recv(8))
                conn.sendall(b"N")

    def close(self) -> None:
        self.sock.close()


def test_multi_listener_egress(dev: DevServer, fake: FakeProviders) -> None:
    """One gateway, two listeners: the HTTPS call terminated (key injected, an L7 span),
    the PostgreSQL handshake on plain TCP (bytes untouched, a connection record)."""
    fake.replies["claude-haiku-4-5"] = "Hello!"
    db = FakePostgres()
    try:
        build(dev, "multi-listener-egress")
        apply(dev, manifests(dev, "multi-listener-egress", {
            "api.anthropic.com": fake.port, "db.internal.example.com": db.port}))
        got = answered(dev, "multi-listener", {})
        assert got == {"llm": {"status": 200, "text": "Hello!"},
                       "postgres": {"ssl_answer": "N"}}, got
        assert bytes.fromhex("0000000804d2162f") in db.requests
        def both() -> tuple[list[dict[str, Any]], list[dict[str, Any]]] | None:
            found = traces(dev, "TaskAgent", "multi-listener")
            l7 = [s for s in found if s["attributes"].get("url.path") == "/v1/messages"]
            l4 = [s for s in found if s["attributes"].get("server.port") == "5432"]
            return (l7, l4) if l7 and l4 else None

        l7, l4 = until(both, "the HTTPS call and the TCP connection are not both recorded")
        assert l7[-1]["attributes"]["http.response.status_code"] == "200", l7
        assert l4[-1]["attributes"]["network.transport"] == "tcp", l4
    finally:
        db.close()


def test_mcp_tools_under_a_tool_policy(dev: DevServer, fake: FakeProviders) -> None:
    server = FakeMCP(ca=fake.ca)
    try:
        build(dev, "mcp-tools")
        apply(dev, manifests(dev, "mcp-tools", {"mcp.example.com": server.port}))
        got = answered(dev, "mcp-tools", {"calls": [
            {"tool": "github_get_pr", "arguments": {"query": "42"}},
            {"tool": "github_delete_repo", "arguments": {"query": "clrk"}},
            {"tool": "shell_exec", "arguments": {"query": "id"}}]})
        assert got["tools"] == ["github_get_pr", "github_search_issues"], got
        calls = {c["tool"]: c for c in got["calls"]}
        assert calls["github_get_pr"].get("ok") == "github_get_pr ran 42", got
        assert "denied" in calls["github_delete_repo"]["refused"], got
        assert "refused" in calls["shell_exec"], got
        assert server.calls == ["github_get_pr"]  # the refused never reached the server
        def decisions() -> dict[str, str]:
            found = {s["attributes"]["gen_ai.tool.name"]: s["attributes"]["clrk.decision"]
                     for s in traces(dev, "TaskAgent", "mcp-tools")
                     if s["attributes"].get("gen_ai.tool.name")}
            return found if len(found) == 2 else {}

        assert until(decisions, "not every tool call has a span") == {
            "github_get_pr": "allow", "github_delete_repo": "deny"}
        # A tool no rule names is refused before any rule's attributes apply.
        unmatched = [s for s in traces(dev, "TaskAgent", "mcp-tools")
                     if "shell_exec" in json.dumps(s)]
        assert unmatched and all(s["attributes"]["clrk.decision"] == "deny"
                                 for s in unmatched), unmatched
    finally:
        server.stop()


def test_cron_bot_fires_every_minute(dev: DevServer, cron_bot: float) -> None:
    """Applied first in this module: by now (or within two minutes of its apply) a cron
    fire has run, with scheduleInput as its data."""
    def fired() -> list[str]:
        rows = dev.kubectl("get", "invocations", "-o", "json").stdout
        return [i["metadata"]["name"] for i in json.loads(rows)["items"]
                if i["spec"]["agentName"] == "cron-bot"
                and i["spec"].get("trigger") == "cron"
                and (i.get("status") or {}).get("phase") == "Succeeded"]

    until(fired, "no cron fire succeeded",
          timeout=max(10.0, 150 - (time.monotonic() - cron_bot)))
    line = until(lambda: [ln for ln in logs(dev, "cron-bot").splitlines()
                          if "nightly-digest" in ln], "no output of the fire")[0]
    report = json.loads(line[line.index("{"):])
    assert report["report"] == "nightly-digest" and report["trigger"] == "cron", report


LOG_LINE = re.compile(
    r"^\d\d:\d\d:\d\d\.\d{3} POST api\.anthropic\.com/v1/messages 200 \d+ms req=\d+B "
    r"resp=\d+B provider=anthropic model=claude-haiku-4-5 input_tokens=12 "
    r"output_tokens=24 route=default/anthropic trace=[0-9a-f]{8}$")


def test_the_dev_tui_watches_echo_bot_and_word_count(dev: DevServer,
                                                      fake: FakeProviders) -> None:
    """Issue 13's acceptance, through Textual's pilot against this real `clrk dev`: the
    quickstart's echo-bot calling the fake Anthropic, word-count invoked once."""
    fake.replies["claude-haiku-4-5"] = "Hello! Nice to meet you."
    build(dev, "echo-bot")
    build(dev, "word-count")
    docs = manifests(dev, "echo-bot", providers(fake, "api.anthropic.com"))
    text = (EXAMPLES / "word-count" / "taskagent.yaml").read_text()
    docs.append(yaml.safe_load(text.replace("127.0.0.1:5001/", f"{dev.registry}/")))
    apply(dev, docs)
    try:
        asyncio.run(_drive_the_tui(dev))
    finally:
        dev.kubectl("delete", "daemonagent", "echo-bot")


async def _drive_the_tui(dev: DevServer) -> None:
    from textual.widgets import DataTable, RichLog, Tree

    from clrk.cli.tui.app import DevTUI

    app = DevTUI(dev.data_dir, refresh_seconds=0.5)
    async with app.run_test(size=(220, 60)) as pilot:

        async def until_true(check: Callable[[], Any], what: str, timeout: float = 180
                             ) -> Any:
            deadline = time.monotonic() + timeout
            while not (got := check()):
                assert time.monotonic() < deadline, what
                await pilot.pause(0.5)
            return got

        def rows(table_id: str) -> list[list[str]]:
            table = app.query_one(table_id, DataTable)
            return [[str(c) for c in table.get_row_at(i)] for i in range(table.row_count)]

        def echo_bot() -> list[str] | None:
            row = next((r for r in rows("#agents") if r[2] == "echo-bot"), None)
            return row if row is not None and row[3].startswith("up ") \
                and row[4] != "0" else None

        # The agents view: echo-bot up, with calls in the last minute.
        row = await until_true(echo_bot, f"echo-bot never up with calls: {rows('#agents')}")
        assert row[0] == "DaemonAgent" and float(row[4]) > 0 and row[10] == "default", row
        assert "requests/min" in str(app.query_one("#summary").render())

        # :system lists the worker and its Envoy; the otel-logs pane has the call's line.
        await pilot.press("colon", *"system", "enter")
        await pilot.pause()
        assert app.current == "system"
        names = await until_true(lambda: [r[0] for r in rows("#components")
                                          if r[0].startswith("worker-0")], "no worker")
        assert names == ["worker-0", "worker-0/envoy"], names
        pane = app.query_one("#otel-logs", RichLog)
        line = await until_true(lambda: next((s.text.rstrip() for s in pane.lines
                                              if LOG_LINE.match(s.text.rstrip())), None),
                                f"no call line like the quickstart's: {app.log_lines}")
        assert line.split()[-1] in {f"trace={s['traceId'][:8]}" for s in app.spans}

        # The matching span expands to its attributes; the key's header is redacted.
        tree = app.query_one("#otel-traces", Tree)
        # (the window also holds earlier tests' calls: cross-provider-jq's, translated)
        node = next(n for n in tree.root.children
                    if str(n.label).split()[1:3] == ["POST", "api.anthropic.com/v1/messages"]
                    and (n.data or {}).get("attributes", {}).get("clrk.agent.name")
                    == "echo-bot")
        tree.focus()
        tree.move_cursor(node)
        await pilot.press("space")
        await pilot.pause()
        assert node.is_expanded
        assert "  http.request.header.x-api-key: [redacted]" in [str(c.label)
                                                                 for c in node.children]

        # word-count, invoked once, is among its agent's invocations.
        await asyncio.to_thread(answered, dev, "word-count", {"text": "one two three"})
        await pilot.press("escape")
        await pilot.pause()
        assert app.current == "agents"
        await pilot.press("slash", *"word-count", "enter")
        await until_true(lambda: [r[2] for r in rows("#agents")] == ["word-count"],
                         "the filter left other agents")
        await pilot.press("enter")
        await until_true(lambda: app.current == "agent" and app.detail is not None,
                         "word-count did not open")
        invs = await until_true(lambda: [r for r in rows("#agent-invocations")
                                         if r[3] == "Succeeded"], "no invocation listed")
        assert {r[2] for r in rows("#agent-invocations")} == {"word-count"}, invs
        await pilot.press("y")
        await pilot.pause()
        assert app.current == "yaml"
        await pilot.press("escape", "escape")

        # A smaller terminal, and a worker lost and back: the TUI goes on.
        await pilot.resize_terminal(90, 24)
        await pilot.press("colon", *"system", "enter")
        dev.clrk("dev", "reload", "worker-0", "--data-dir", str(dev.data_dir))
        await until_true(lambda: any(r[0] == "worker-0" and r[5] == "1" and r[2] == "yes"
                                     for r in rows("#components")),
                         f"worker-0 not shown back: {rows('#components')}")
        assert app.is_running
        await pilot.press("q")


def test_the_web_console_shows_what_the_agents_did(dev: DevServer, fake: FakeProviders,
                                                   tmp_path: Path) -> None:
    """Issue 14's acceptance in headless chromium against this `clrk dev`: login
    required; every page drawn from what ran here (jq-bot's LLM call with its tokens and
    cost in the trace tree, openai-bot's refused lookups, spend per model equal to the
    recorded spans' costs); the live view showing an invocation made meanwhile; no
    JavaScript error and no request to anywhere but the API server; a screenshot of each
    page under tmp_path/screens."""
    from tests.console_pages import READY, browser

    fake.replies["claude-haiku-4-5"] = "[.items[] | select(.price > 2)] | length"
    build(dev, "jq-bot")
    apply(dev, manifests(dev, "jq-bot", providers(fake, "api.anthropic.com")))
    if dev.kubectl("get", "daemonagent", "openai-bot", check=False).returncode != 0:
        build(dev, "openai-bot")  # no gateway: its lookups are refused (alone, -k)
        apply(dev, manifests(dev, "openai-bot", {}))
    question = {"question": "How many items cost more than 2?",
                "input": {"items": [{"price": 1}, {"price": 3}]}}
    answered(dev, "jq-bot", question)
    r = run_task(dev, "jq-bot", question)
    assert r.status_code == 200, r.text
    invocation = r.headers["x-clrk-invocation"]

    def llm_spans() -> list[dict[str, Any]]:
        return [s for s in traces(dev, "TaskAgent", "jq-bot")
                if s["attributes"].get("clrk.invocation") == invocation
                and s["attributes"].get("gen_ai.usage.output_tokens")]

    call = until(llm_spans, "jq-bot's call was never recorded")[0]["attributes"]
    until(lambda: any("api.openai.com" in json.dumps(s) and "deny" in json.dumps(s)
                      for s in traces(dev, "DaemonAgent", "openai-bot")),
          "no refused lookup of openai-bot")

    with browser(dev.url, tmp_path / "screens") as b:
        page = b.page
        # Login is required: the page is the login form, and the API answers 401.
        login = page.goto(f"{dev.url}/console/")
        assert login is not None and login.status == 401
        assert page.locator("form input[name=token]").is_visible()
        b.shot("login")
        assert page.request.get(f"{dev.url}/console/api/agents").status == 401
        page.fill("input[name=token]", "wrong-token")
        page.click("button[type=submit]")
        assert "not valid" in page.inner_text("main")
        page.fill("input[name=token]", dev.token)
        page.click("button[type=submit]")
        page.wait_for_selector(f"{READY}[data-page='overview']")
        assert page.inner_text("#user") == "clrk-admin"

        b.open("overview")
        assert int(page.inner_text("#tile-invocations .value").replace(",", "")) >= 2
        assert "jq-bot" in page.inner_text("#top-agents")

        b.open("agents")
        agents = page.inner_text("#agents-table")
        for name in ("jq-bot", "openai-bot"):
            assert name in agents, agents
        phase = next(r for r in agents.splitlines() if "jq-bot" in r).split("\t")[2]
        assert phase.split()[0] in ("Ready", "Pending", "Failed"), phase

        b.open("agents/default/TaskAgent/jq-bot", "agent-jq-bot")
        assert invocation in page.inner_text("#agent-invocations")
        assert "jq-bot-00001" in page.inner_text("#revisions")
        assert "kind: TaskAgent" in page.inner_text("#agent-yaml")

        b.open(f"invocations/default/{invocation}", "invocation")
        llm = page.locator("#trace-tree .row[data-kind='llm']").first
        shown = llm.inner_text()
        model = call.get("gen_ai.response.model") or call["gen_ai.request.model"]
        assert model in shown, shown
        assert f"{call['gen_ai.usage.input_tokens']} in / " \
               f"{call['gen_ai.usage.output_tokens']} out tokens" in shown, shown
        assert f"${call['clrk.cost.usd']}" in shown, shown
        assert page.locator("#trace-tree .row[data-kind='invocation']").count() == 1
        llm.click()
        page.wait_for_selector("#span-detail dl")
        detail = page.inner_text("#span-detail")
        assert "http.request.header.x-api-key" in detail and "[redacted]" in detail
        assert KEYS["api.anthropic.com"] not in page.content()
        assert "[.items[] | select(.price > 2)] | length" in page.inner_text("#stdout")
        b.shot("invocation-span")

        b.open("egress")
        refused = [row for row in page.locator("#hosts tbody tr").all_inner_texts()
                   if "api.openai.com" in row and "deny" in row]
        assert refused and "openai-bot" in refused[0], refused
        assert "jq-bot" in page.inner_text("#gateways") or \
            "default/" in page.inner_text("#gateways")

        # Spend is the sum of the recorded calls' costs: per TaskAgent, against its spans
        # (the traces subresource; TaskAgents call only when invoked, while DaemonAgents
        # such as openai-bot-mitm go on calling between the two reads); per model, the
        # agents' sums again (an agent deleted since, like echo-bot, keeps its spend but
        # has no traces to read).
        b.open("spend")
        expected: dict[str, Decimal] = {}
        for name in (n.split("/", 1)[1]
                     for n in dev.kubectl("get", "ta", "-o", "name").stdout.split()):
            costs = [Decimal(s["attributes"]["clrk.cost.usd"])
                     for s in traces(dev, "TaskAgent", name)
                     if s["attributes"].get("clrk.cost.usd")]
            if costs:
                expected[f"default/{name}"] = sum(costs, Decimal(0))
        assert "default/jq-bot" in expected, expected

        def table(table_id: str) -> dict[str, Decimal]:
            found = {}
            for row in page.locator(f"{table_id} tbody tr").all():
                cells = row.locator("td").all_inner_texts()
                # By model: provider/model (a translated call's model under the
                # agent-facing provider is a row of its own).
                key = cells[0] if table_id == "#spend-by-agent" else f"{cells[0]}/{cells[1]}"
                found[key] = Decimal(cells[-1].split()[0].lstrip("$")) \
                    if cells[-1].startswith("$") else Decimal(0)
            return found

        by_agent, by_model = table("#spend-by-agent"), table("#spend-by-model")
        for agent_name, cost in expected.items():
            assert by_agent[agent_name] == cost, (agent_name, by_agent, expected)
        assert f"anthropic/{model}" in by_model, by_model
        assert sum(by_model.values()) == sum(by_agent.values()), (by_model, by_agent)
        total = page.inner_text("#spend-total .value").split()[0].lstrip("$")
        assert Decimal(total) == sum(by_model.values())

        b.open("workers")
        assert "worker-0" in page.inner_text("#workers")

        # The live view shows an invocation made while it is open.
        b.open("live")
        r = run_task(dev, "jq-bot", question)
        assert r.status_code == 200, r.text
        fresh = r.headers["x-clrk-invocation"]
        page.wait_for_selector(f"#live-feed tr[data-kind='invocation']:has-text('{fresh}')",
                               timeout=60_000)
        b.shot("live")

        page.click("#logout")
        page.wait_for_selector("form input[name=token]")
        page.goto(f"{dev.url}/console/#/agents")
        assert page.locator("form input[name=token]").is_visible()
        assert b.errors == [], b.errors
    shots = sorted(p.name for p in (tmp_path / "screens").iterdir())
    assert {"login.png", "overview.png", "agents.png", "agent-jq-bot.png", "invocation.png",
            "egress.png", "spend.png", "workers.png", "live.png"} <= set(shots), shots
