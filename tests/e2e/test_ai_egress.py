"""LLM traffic through the gateway, from inside real sandboxes: TLS terminated with a
leaf from the gateway's CA, the credential injected at the proxy, tokens counted from
the provider's own answer, and every call recorded with its secrets redacted. The
providers are fakes on loopback (tests/fake_providers.py) that the gateway reaches
through ``upstreamTLS.hostAliases`` and trusts through its additional trust bundle."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import DevServer, start_dev
from tests.fake_providers import FakeProviders, serving
from tests.images import Registry, python_base

pytestmark = pytest.mark.e2e
KEY = "sk-ant-test-3f9c1e7d5b2a4c68"  # what only the proxy and the fake may ever see
G = "clrk.apoxy.dev/v1alpha1"


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeProviders]:
    yield from serving({"api.anthropic.com": KEY})


def dev_trusting(registry: Registry, fake: FakeProviders,
                 tmp_path_factory: pytest.TempPathFactory, name: str) -> Iterator[DevServer]:
    """`clrk dev` with a worker, the Python test image, and the fake providers' CA in the
    Secret `provider-ca` (gateways list it in their upstream trust bundle)."""
    registry.push("test/python", "1", python_base())
    server = start_dev(tmp_path_factory.mktemp(name) / "clrk", "--insecure-registry",
                       registry.host, workers=1)
    try:
        server.wait_for_worker()
        ca = tmp_path_factory.mktemp("fake-ca") / "ca.crt"
        ca.write_bytes(fake.ca.cert_pem)
        server.kubectl("create", "secret", "generic", "provider-ca", f"--from-file=ca.crt={ca}")
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def dev(registry: Registry, fake: FakeProviders,
        tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevServer]:
    yield from dev_trusting(registry, fake, tmp_path_factory, "ai-egress")


def apply(dev: DevServer, *docs: dict[str, Any]) -> None:
    dev.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(docs))


def provider_gateway(name: str, fake: FakeProviders, policy: str = "deny-all",
                     **spec: Any) -> dict[str, Any]:
    aliases = [{"hostname": h, "address": f"127.0.0.1:{fake.port}"}
               for h in ("api.anthropic.com", "api.openai.com",
                         "generativelanguage.googleapis.com", "aiplatform.googleapis.com",
                         "mcp.example.com")]  # every host a route names: no lookup leaves
    return {"apiVersion": G, "kind": "EgressGateway", "metadata": {"name": name},
            "spec": {"defaultPolicy": policy,
                     "listeners": [{"name": "egress", "protocol": "TLS",
                                    "tls": {"mode": "Terminate"}}],
                     "upstreamTLS": {"hostAliases": aliases,
                                     "additionalTrustBundleSecretRef": {
                                         "name": "provider-ca", "key": "ca.crt"}},
                     **spec}}


def spans(dev: DevServer, kind: str, name: str) -> list[dict[str, Any]]:
    plural = {"TaskAgent": "taskagents", "DaemonAgent": "daemonagents"}[kind]
    out = dev.kubectl("get", "--raw",
                      f"/apis/{G}/namespaces/default/{plural}/{name}/traces").stdout
    return list(json.loads(out)["items"])


def http_spans(dev: DevServer, kind: str, name: str) -> list[dict[str, Any]]:
    return [s for s in spans(dev, kind, name) if "http.request.method" in s["attributes"]]


def until(check: Any, what: str, timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while not (got := check()):
        assert time.monotonic() < deadline, what
        time.sleep(0.5)
    return got


def poll(fetch: Any, ok: Any, what: str, timeout: float = 60) -> Any:
    """``fetch()`` until ``ok`` of it holds; returns what satisfied it."""
    deadline = time.monotonic() + timeout
    while not ok(got := fetch()):
        assert time.monotonic() < deadline, f"{what}: {got}"
        time.sleep(0.5)
    return got


ECHO_BOT = """
echo "ANTHROPIC_API_KEY=${ANTHROPIC_API_KEY:-unset}"
env | grep -c sk-ant || true
while :; do
  curl -sS https://api.anthropic.com/v1/messages \\
    -H 'anthropic-version: 2023-06-01' \\
    -H 'content-type: application/json' \\
    --data '{"model":"claude-haiku-4-5","max_tokens":64,'\
'"messages":[{"role":"user","content":"Say hello."}]}'
  echo
  sleep 5
done
"""


def test_quickstart_echo_bot(dev: DevServer, registry: Registry,
                             fake: FakeProviders) -> None:
    """The quickstart: a curl loop to https://api.anthropic.com with no key; the fake
    upstream sees the real key, the agent never does, and the span shows it redacted
    with the provider, model and token counts, stored and re-exported over OTLP."""
    from tests.fake_providers import OTLPCapture

    collector = OTLPCapture()
    dev.kubectl("create", "secret", "generic", "anthropic-credentials",
                f"--from-literal=api-key={KEY}")
    examples = Path(__file__).resolve().parents[2] / "examples" / "echo-bot" / "manifests"
    docs = [d for f in sorted(examples.glob("*.yaml"))
            for d in yaml.safe_load_all(f.read_text()) if d]
    for doc in docs:
        if doc["kind"] == "EgressGateway":
            doc["spec"] = {**provider_gateway("echo-bot", fake)["spec"],
                           "otlp": {**doc["spec"]["otlp"], "endpoint": collector.url,
                                    "headers": {"x-tenant": "team-a"}}}
        if doc["kind"] == "DaemonAgent":
            doc["spec"]["template"]["spec"].update(  # the spec's curl loop
                image=f"{registry.host}/test/python:1", command=["sh", "-c"], args=[ECHO_BOT])
    apply(dev, *docs)
    until(lambda: any(s.path == "/v1/messages" for s in fake.seen),
          "the fake upstream never saw the agent's call")
    call = next(s for s in fake.seen if s.path == "/v1/messages")
    assert call.headers["x-api-key"] == KEY
    # Nothing about the sandbox or the proxy leaks upstream.
    assert not any(h.startswith(("x-envoy-", "x-clrk-")) or h == "x-forwarded-for"
                   for h in call.headers), list(call.headers)
    assert call.json()["model"] == "claude-haiku-4-5"

    found = until(lambda: http_spans(dev, "DaemonAgent", "echo-bot"),
                  "no span for the agent's call")
    attrs = found[0]["attributes"]
    assert attrs["http.response.status_code"] == "200"
    assert attrs["gen_ai.provider.name"] == "anthropic"
    assert attrs["gen_ai.request.model"] == "claude-haiku-4-5"
    assert attrs["gen_ai.response.model"] == "claude-haiku-4-5"
    assert attrs["gen_ai.usage.input_tokens"] == "12"
    assert attrs["gen_ai.usage.output_tokens"] == "24"
    assert attrs["gen_ai.usage.cache_read.input_tokens"] == "3"
    assert attrs["clrk.route"] == "default/anthropic"
    assert attrs["clrk.agent.name"] == "echo-bot"
    request = next(e for e in found[0]["events"] if e["name"] == "http.request")
    assert request["attributes"]["http.request.header.x-api-key"] == "[redacted]"
    assert "http.request.body" in request["attributes"]  # captureBody.maxBytes is set

    def replied() -> str:
        out = dev.clrk("agents", "logs", "echo-bot").stdout
        return out if "Hello!" in out else ""

    logs = until(replied, "the agent never printed the reply")
    assert "ANTHROPIC_API_KEY=unset" in logs
    assert KEY not in logs
    assert "\n0\n" in f"\n{logs}"  # nothing in the agent's environment holds the key
    assert_nowhere(dev, KEY, [("DaemonAgent", "echo-bot")])
    stored = {s["traceId"] for s in http_spans(dev, "DaemonAgent", "echo-bot")}
    dev.kubectl("delete", "daemonagent", "echo-bot")

    # The calls stored are the calls exported (the loop's calls arrive in any order).
    exported = until(lambda: [s for s in collector.spans() if s["name"].startswith("POST")
                              and s["traceId"] in stored],
                     "no stored span was re-exported over OTLP")
    attributes = {a["key"]: a["value"]["stringValue"] for a in exported[0]["attributes"]}
    assert attributes["gen_ai.usage.output_tokens"] == "24"
    headers = {a["key"]: a["value"]["stringValue"] for e in exported[0]["events"]
               for a in e["attributes"]}
    assert headers["http.request.header.x-api-key"] == "[redacted]"
    assert all(h.get("x-tenant") == "team-a" for _, h, _ in collector.received)
    assert any(path == "/v1/logs" for path, _, _ in collector.received)
    assert not any(KEY.encode() in body for _, _, body in collector.received)
    collector.stop()


def assert_nowhere(dev: DevServer, value: str, agents: list[tuple[str, str]]) -> None:
    """The credential is nowhere in clrk's data directory (its logs, Envoy's files,
    the stores), nor in any stored span of the agents."""
    found = subprocess.run(["grep", "-rlaF", value, str(dev.data_dir)],
                           capture_output=True, text=True)
    assert found.stdout == "", f"the credential is written in {found.stdout}"
    for kind, name in agents:
        assert value not in json.dumps(spans(dev, kind, name))


SDKS = """
import anthropic, openai
from google import genai

msgs = [{"role": "user", "content": "hi"}]
a = anthropic.Anthropic(api_key="placeholder-the-proxy-replaces-it", max_retries=0)
r = a.messages.create(model="claude-x", max_tokens=50, messages=msgs)
print("anthropic", r.usage.input_tokens, r.usage.output_tokens)
with a.messages.stream(model="claude-x", max_tokens=50, messages=msgs) as s:
    final = s.get_final_message()
print("anthropic-stream", final.usage.input_tokens, final.usage.output_tokens)

o = openai.OpenAI(api_key="placeholder", max_retries=0)
r = o.chat.completions.create(model="gpt-x", messages=msgs)
print("openai", r.usage.prompt_tokens, r.usage.completion_tokens)
usage = None
for chunk in o.chat.completions.create(model="gpt-x", messages=msgs, stream=True):
    usage = chunk.usage or usage  # only there because the proxy asked for it
print("openai-stream", usage.prompt_tokens, usage.completion_tokens)
r = o.responses.create(model="gpt-r", input="hi")
print("responses", r.usage.input_tokens, r.usage.output_tokens)
final = None
for event in o.responses.create(model="gpt-r", input="hi", stream=True):
    if event.type == "response.completed":
        final = event.response
print("responses-stream", final.usage.input_tokens, final.usage.output_tokens)

g = genai.Client(api_key="placeholder")
r = g.models.generate_content(model="gemini-x", contents="hi")
print("google", r.usage_metadata.prompt_token_count, r.usage_metadata.candidates_token_count)
last = None
for c in g.models.generate_content_stream(model="gemini-x", contents="hi"):
    last = c.usage_metadata or last
print("google-stream", last.prompt_token_count, last.candidates_token_count)
"""


def credential(name: str, route: str, header: str, prefix: str = "") -> dict[str, Any]:
    spec: dict[str, Any] = {"parentRefs": [{"kind": "AIProviderRoute", "name": route}],
                            "secretRef": {"name": "provider-keys"}, "secretKey": name,
                            "target": "Header", "headerName": header}
    if prefix:
        spec["valuePrefix"] = prefix
    return {"apiVersion": G, "kind": "CredentialInjectionPolicy",
            "metadata": {"name": f"{route}-key"}, "spec": spec}


def ai_route(name: str, gateway: str, provider: str, **rule: Any) -> dict[str, Any]:
    return {"apiVersion": G, "kind": "AIProviderRoute", "metadata": {"name": name},
            "spec": {"parentRefs": [{"name": gateway}],
                     "rules": [{"matches": [{"provider": provider}], **rule}]}}


def task(name: str, gateway: str, image: str, script: str) -> dict[str, Any]:
    return {"apiVersion": G, "kind": "TaskAgent", "metadata": {"name": name},
            "spec": {"workerPoolRef": "default", "timeout": "120s",
                     "egressRefs": [{"gatewayRef": gateway}],
                     "template": {"spec": {"image": image,
                                           "command": ["/opt/venv/bin/python", "-c", script]}}}}


def invoke(dev: DevServer, name: str) -> Any:
    import httpx

    return httpx.post(f"{dev.ingress}/", content=b"{}", timeout=180,
                      headers={"X-Clrk-TaskAgent": f"default/{name}"})


def test_official_sdks_streaming_and_not(dev: DevServer, registry: Registry,
                                         fake: FakeProviders) -> None:
    """openai, anthropic and google-genai in a sandbox, each streaming and not: the SDK,
    the fake upstream and the stored span agree on the token counts, and the key the
    agent held was replaced by the real one."""
    keys = {"anthropic": "sk-ant-sdk-1111", "openai": "sk-openai-sdk-2222",
            "google": "AIza-sdk-3333"}
    fake.keys.update({"api.anthropic.com": keys["anthropic"],
                      "api.openai.com": keys["openai"],
                      "generativelanguage.googleapis.com": keys["google"]})
    dev.kubectl("create", "secret", "generic", "provider-keys",
                *(f"--from-literal={k}={v}" for k, v in keys.items()))
    apply(dev, provider_gateway("sdk-gw", fake),
          ai_route("sdk-anthropic", "sdk-gw", "anthropic"),
          ai_route("sdk-openai", "sdk-gw", "openai"),
          ai_route("sdk-google", "sdk-gw", "google"),
          credential("anthropic", "sdk-anthropic", "x-api-key"),
          credential("openai", "sdk-openai", "authorization", "Bearer "),
          credential("google", "sdk-google", "x-goog-api-key"),
          task("sdk-user", "sdk-gw", f"{registry.host}/test/python:1", SDKS))
    deadline = time.monotonic() + 60
    while (r := invoke(dev, "sdk-user")).status_code != 200 or "google-stream" not in r.text:
        assert time.monotonic() < deadline, (r.status_code, r.text[-3000:])
        time.sleep(1)
    got = {line.split()[0]: tuple(int(x) for x in line.split()[1:])
           for line in r.text.splitlines() if line.strip()}
    assert got == {"anthropic": (12, 24), "anthropic-stream": (12, 24),
                   "openai": (13, 5), "openai-stream": (13, 5),
                   "responses": (13, 5), "responses-stream": (13, 5),
                   "google": (9, 4), "google-stream": (9, 4)}

    def recorded() -> list[dict[str, Any]]:
        found = [s for s in http_spans(dev, "TaskAgent", "sdk-user")
                 if s["attributes"].get("clrk.usage.extracted") == "true"]
        return found if len(found) >= 8 else []

    calls = until(recorded, "not every SDK call has a span with its usage")
    seen = {(s["attributes"]["gen_ai.provider.name"], s["attributes"]["gen_ai.request.stream"],
             s["attributes"]["url.path"].rsplit("/", 1)[-1].split(":")[-1]):
            (int(s["attributes"]["gen_ai.usage.input_tokens"]),
             int(s["attributes"]["gen_ai.usage.output_tokens"])) for s in calls[-8:]}
    assert seen == {("anthropic", "false", "messages"): (12, 24),
                    ("anthropic", "true", "messages"): (12, 24),
                    ("openai", "false", "completions"): (13, 5),
                    ("openai", "true", "completions"): (13, 5),
                    ("openai", "false", "responses"): (13, 5),
                    ("openai", "true", "responses"): (13, 5),
                    ("google", "false", "generateContent"): (9, 4),
                    ("google", "true", "streamGenerateContent"): (9, 4)}
    # Envoy meters the plain calls alone; streams go through the policy service.
    assert all((s["attributes"].get("clrk.metered_by") == "envoy") ==
               (s["attributes"]["gen_ai.request.stream"] == "false") for s in calls[-8:])
    for s in calls:
        headers = next(e for e in s["events"] if e["name"] == "http.request")["attributes"]
        assert all(v == "[redacted]" for k, v in headers.items()
                   if k.split(".")[-1] in ("x-api-key", "authorization", "x-goog-api-key"))
    assert_nowhere(dev, keys["openai"], [("TaskAgent", "sdk-user")])


CALLS = """
import json, sys, urllib.request, urllib.error

def call(label, url, body, headers=None):
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"content-type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            status, hdrs, text = r.status, r.headers, r.read().decode()
    except urllib.error.HTTPError as e:
        status, hdrs, text = e.code, e.headers, e.read().decode()
    except OSError as e:  # no connection at all
        status, hdrs, text = 0, {}, repr(e)
    print(json.dumps({"label": label, "status": status, "retry": hdrs.get("retry-after"),
                      "body": text[:300]}))

ANTHROPIC = "https://api.anthropic.com/v1/messages"
def claude(model, max_tokens=5):
    return {"model": model, "max_tokens": max_tokens, "messages": [{"role": "user",
                                                                    "content": "hi"}]}
for label, url, body, headers in json.loads(sys.argv[1]):
    call(label, url, body, headers)
"""


def calls_agent(name: str, gateway: str, image: str, calls: list[Any]) -> dict[str, Any]:
    doc = task(name, gateway, image, CALLS)
    doc["spec"]["template"]["spec"]["args"] = [json.dumps(calls)]
    return doc


def results(dev: DevServer, name: str) -> dict[str, dict[str, Any]]:
    r = invoke(dev, name)
    assert r.status_code == 200, (r.status_code, r.text[-2000:])
    return {d["label"]: d for d in map(json.loads, r.text.splitlines()) if d}


def claude(model: str, max_tokens: int = 5) -> dict[str, Any]:
    return {"model": model, "max_tokens": max_tokens,
            "messages": [{"role": "user", "content": "hi"}]}


ANTHROPIC_URL = "https://api.anthropic.com/v1/messages"
GEMINI_URL = "https://generativelanguage.googleapis.com/v1beta/models/gemini-x:generateContent"


def test_budgets_rate_limits_and_deny(dev: DevServer, registry: Registry,
                                      fake: FakeProviders) -> None:
    """Token budgets (per execution, per day, per request), a rate limit and a deny
    policy, each refusing in the provider's own shape before anything goes upstream;
    the day budget holds across executions and an Envoy restart."""
    fake.keys.pop("api.anthropic.com", None)
    fake.keys.pop("api.openai.com", None)
    budget = {"apiVersion": G, "kind": "AIProviderRoute", "metadata": {"name": "budgets"},
              "spec": {"parentRefs": [{"name": "pol-gw"}], "rules": [
                  {"matches": [{"provider": "anthropic", "models": ["exec-*"]}],
                   "filters": [{"type": "TokenBudget",
                                "tokenBudget": {"maxTokensPerExecution": 30}}]},
                  {"matches": [{"provider": "anthropic", "models": ["day-*"]}],
                   "filters": [{"type": "TokenBudget", "tokenBudget": {"maxTokensPerDay": 50}}]},
                  {"matches": [{"provider": "anthropic", "models": ["out-*"]}],
                   "filters": [{"type": "TokenBudget",
                                "tokenBudget": {"maxOutputTokensPerRequest": 100}}]}]}}
    rate = {"apiVersion": G, "kind": "RateLimitPolicy", "metadata": {"name": "two-per-hour"},
            "spec": {"targetRef": {"kind": "AIProviderRoute", "name": "pol-openai"},
                     "requests": 2, "window": "1h", "scope": "PerAgent"}}
    deny = {"apiVersion": G, "kind": "EgressDenyPolicy", "metadata": {"name": "no-gemini"},
            "spec": {"targetRef": {"kind": "AIProviderRoute", "name": "pol-google"},
                     "denyResponse": {"statusCode": 451,
                                      "message": "Gemini is disabled by policy."}}}
    chat = {"model": "gpt-x", "messages": [{"role": "user", "content": "hi"}]}
    openai_url = "https://api.openai.com/v1/chat/completions"
    first = [["exec-1", ANTHROPIC_URL, claude("exec-a"), {}],
             ["exec-2", ANTHROPIC_URL, claude("exec-a"), {}],
             ["out", ANTHROPIC_URL, claude("out-a", 500), {}],
             ["out-ok", ANTHROPIC_URL, claude("out-a", 50), {}],
             ["day-1", ANTHROPIC_URL, claude("day-a"), {}],
             ["day-2", ANTHROPIC_URL, claude("day-a"), {}],
             ["day-3", ANTHROPIC_URL, claude("day-a"), {}],
             ["rate-1", openai_url, chat, {}], ["rate-2", openai_url, chat, {}],
             ["rate-3", openai_url, chat, {}],
             ["deny", GEMINI_URL, {"contents": []}, {}],
             ["unrouted", ANTHROPIC_URL, claude("other-model"), {}]]
    image = f"{registry.host}/test/python:1"
    apply(dev, provider_gateway("pol-gw", fake), budget,
          ai_route("pol-openai", "pol-gw", "openai"), ai_route("pol-google", "pol-gw", "google"),
          rate, deny, calls_agent("pol-user", "pol-gw", image, first))
    until(lambda: dev.kubectl("get", "egressgateway", "pol-gw", "-o",
                              "jsonpath={.status.caSecretName}").stdout, "no CA yet")
    got = results(dev, "pol-user")
    status = {k: v["status"] for k, v in got.items()}
    assert status == {"exec-1": 200, "exec-2": 429, "out": 429, "out-ok": 200,
                      "day-1": 200, "day-2": 200, "day-3": 429,
                      "rate-1": 200, "rate-2": 200, "rate-3": 429, "deny": 451,
                      "unrouted": 403}, got
    assert json.loads(got["exec-2"]["body"])["error"]["type"] == "rate_limit_error"
    assert "maxTokensPerExecution" in got["exec-2"]["body"]
    assert "maxOutputTokensPerRequest" in got["out"]["body"]
    assert "maxTokensPerDay" in got["day-3"]["body"]
    assert json.loads(got["rate-3"]["body"])["error"]["code"] == "rate_limit_exceeded"
    assert 3000 < int(got["rate-3"]["retry"]) <= 3600
    assert "Gemini is disabled by policy." in got["deny"]["body"]
    day_calls = [s for s in fake.seen if (s.json() or {}).get("model") == "day-a"]
    assert len(day_calls) == 2  # the third was refused before it reached upstream
    assert not any((s.json() or {}).get("model") == "out-a" and
                   s.json()["max_tokens"] == 500 for s in fake.seen)

    # A new execution has a fresh execution budget but the same day budget, also after
    # the worker's Envoy is killed and comes back.
    second = [["exec-1", ANTHROPIC_URL, claude("exec-a"), {}],
              ["day", ANTHROPIC_URL, claude("day-a"), {}]]
    apply(dev, calls_agent("pol-user", "pol-gw", image, second))
    until(lambda: results(dev, "pol-user").get("day", {}).get("status") == 429,
          "the new revision never ran")
    envoy = subprocess.run(["pgrep", "-f", f"envoy.*{dev.data_dir}"], capture_output=True,
                           text=True).stdout.split()
    assert envoy, "no Envoy of this clrk dev"
    subprocess.run(["kill", "-9", *envoy], check=False)
    got = poll(lambda: results(dev, "pol-user"),
               lambda r: r.get("exec-1", {}).get("status") == 200,
               "no traffic after Envoy's restart")
    assert got["day"]["status"] == 429
    assert len([s for s in fake.seen if (s.json() or {}).get("model") == "day-a"]) == 2

    denied = [s for s in http_spans(dev, "TaskAgent", "pol-user")
              if s["attributes"].get("clrk.decision") == "deny"]
    assert {s["attributes"]["http.response.status_code"] for s in denied} >= {"429", "451",
                                                                              "403"}
    assert all(s["attributes"]["clrk.deny_reason"] for s in denied)


def test_query_param_sigv4_and_gcp_credentials(dev: DevServer, registry: Registry,
                                               fake: FakeProviders) -> None:
    """A key as a query parameter, an AWS SigV4 signature that botocore's signer
    verifies on the fake upstream (stale x-amz-* headers from the agent dropped), and a
    Google OAuth token minted from a service-account key at a local token endpoint."""
    from tests.fake_providers import TokenEndpoint, sigv4_verifier

    tokens = TokenEndpoint("ya29.clrk-test-token")
    try:
        aws = json.dumps({"accessKeyId": "AKIDCLRKTEST", "secretAccessKey": "aws-secret-5555"})
        fake.keys["generativelanguage.googleapis.com"] = "AIza-query-4444"
        fake.keys["us-central1-aiplatform.googleapis.com"] = "ya29.clrk-test-token"
        fake.verifiers["bedrock-runtime.us-east-1.amazonaws.com"] = sigv4_verifier(
            "AKIDCLRKTEST", "aws-secret-5555", "us-east-1", "bedrock")
        dev.kubectl("create", "secret", "generic", "cloud-keys",
                    "--from-literal=gemini=AIza-query-4444", f"--from-literal=aws={aws}",
                    f"--from-literal=gcp={tokens.key_json()}")
        gw = provider_gateway("cred-gw", fake)
        gw["spec"]["upstreamTLS"]["hostAliases"] += [
            {"hostname": h, "address": f"127.0.0.1:{fake.port}"}
            for h in ("us-central1-aiplatform.googleapis.com",
                      "bedrock-runtime.us-east-1.amazonaws.com")]

        def policy(name: str, route: str, **spec: Any) -> dict[str, Any]:
            return {"apiVersion": G, "kind": "CredentialInjectionPolicy",
                    "metadata": {"name": name},
                    "spec": {"parentRefs": [{"kind": "AIProviderRoute", "name": route}],
                             "secretRef": {"name": "cloud-keys"}, **spec}}

        vertex = ("https://us-central1-aiplatform.googleapis.com/v1/projects/p/locations/"
                  "us-central1/publishers/google/models/gemini-x:generateContent")
        bedrock = ("https://bedrock-runtime.us-east-1.amazonaws.com/model/"
                   "anthropic.claude-x/converse")
        apply(dev, gw,
              ai_route("gemini", "cred-gw", "google", ) | {"spec": {
                  "parentRefs": [{"name": "cred-gw"}], "rules": [{"matches": [
                      {"provider": "google", "endpoints": ["/v1beta/*"]}]}]}},
              ai_route("vertex", "cred-gw", "google") | {"spec": {
                  "parentRefs": [{"name": "cred-gw"}], "rules": [{"matches": [
                      {"provider": "google", "endpoints": ["/v1/projects/*"]}]}]}},
              ai_route("bedrock", "cred-gw", "bedrock"),
              policy("gemini-key", "gemini", secretKey="gemini", target="QueryParam",
                     queryParamName="key"),
              policy("vertex-sa", "vertex", secretKey="gcp", target="ProviderAuth",
                     providerAuth={"type": "GCPServiceAccount"}),
              policy("bedrock-sig", "bedrock", secretKey="aws", target="ProviderAuth",
                     providerAuth={"type": "AWSv4",
                                   "awsv4": {"region": "us-east-1", "service": "bedrock"}}),
              calls_agent("cred-user", "cred-gw", f"{registry.host}/test/python:1", [
                  ["gemini", GEMINI_URL + "?alt=json", {"contents": []}, {}],
                  ["vertex", vertex, {"contents": []}, {}],
                  ["bedrock", bedrock, {"messages": []},
                   {"x-amz-date": "20000101T000000Z", "x-amz-security-token": "stale",
                    "authorization": "AWS4-HMAC-SHA256 stale"}]]))
        got = poll(lambda: results(dev, "cred-user"),
                   lambda r: all(v["status"] == 200 for v in r.values()),
                   "credentials not injected")
        assert set(got) == {"gemini", "vertex", "bedrock"}
        gemini = next(s for s in fake.seen if s.path.startswith("/v1beta/models/gemini-x"))
        assert "key=AIza-query-4444" in gemini.path and "alt=json" in gemini.path
        signed = next(s for s in fake.seen if s.path.startswith("/model/anthropic.claude-x"))
        assert "x-amz-security-token" not in signed.headers
        assert tokens.grants >= 1
        traced = until(lambda: [s for s in http_spans(dev, "TaskAgent", "cred-user")
                                if s["attributes"].get("clrk.usage.extracted") == "true"],
                       "no spans")
        for span in traced:
            assert "AIza-query-4444" not in json.dumps(span)
        assert_nowhere(dev, "AIza-query-4444", [("TaskAgent", "cred-user")])
        assert_nowhere(dev, "aws-secret-5555", [("TaskAgent", "cred-user")])
        assert_nowhere(dev, "ya29.clrk-test-token", [("TaskAgent", "cred-user")])
    finally:
        tokens.stop()


MCP_CLIENT = """
import asyncio
from mcp.client.client import Client

async def main():
    async with Client("https://mcp.example.com/mcp/") as c:
        tools = await c.list_tools()
        print("tools", ",".join(sorted(t.name for t in tools.tools)))
        for name in ["github_get_pr", "github_delete_repo", "shell_exec",
                     "github_search_issues", "github_search_issues", "github_get_pr",
                     "github_get_pr"]:
            try:
                r = await c.call_tool(name, {"query": "x"})
                print("call", name, "error" if r.is_error else "ok")
            except Exception as e:
                print("call", name, "refused", str(e).replace(chr(10), " ")[:200])
    async with Client("https://mcp.example.com/mcp-json/") as c:
        tools = await c.list_tools()
        print("json-tools", ",".join(sorted(t.name for t in tools.tools)))

asyncio.run(main())
"""


def test_mcp_tool_policy(dev: DevServer, registry: Registry, fake: FakeProviders) -> None:
    """The official MCP client through an MCPRoute: tools/list cut to the allowed tools
    (SSE and JSON answers), a denied tool (regex) and an unmatched one get JSON-RPC
    errors without reaching the server, a per-tool rate limit and maxCallsPerExecution
    hold."""
    from tests.fake_providers import FakeMCP

    server = FakeMCP(ca=fake.ca)
    try:
        gw = provider_gateway("mcp-gw", fake)
        gw["spec"]["upstreamTLS"]["hostAliases"] = [
            {"hostname": "mcp.example.com", "address": f"127.0.0.1:{server.port}"}]
        route = {"apiVersion": G, "kind": "MCPRoute", "metadata": {"name": "github-tools"},
                 "spec": {"parentRefs": [{"name": "mcp-gw"}], "rules": [{
                     "matches": [{"servers": ["https://mcp.example.com/*"],
                                  "tools": ["github_*"]}],
                     "filters": [{"type": "ToolPolicy", "toolPolicy": {
                         "allowedTools": ["github_search_issues", "github_get_pr",
                                          "github_delete_repo"],
                         "deniedTools": ["/.*delete.*/"],
                         "maxCallsPerExecution": 3,
                         "rateLimits": [{"tools": ["github_search_*"], "requests": 1,
                                         "window": "1h"}]}}]}]}}
        apply(dev, gw, route,
              task("mcp-user", "mcp-gw", f"{registry.host}/test/python:1", MCP_CLIENT))
        out = poll(lambda: invoke(dev, "mcp-user"), lambda r: r.status_code == 200
                   and "json-tools" in r.text, "the MCP client never finished").text
        lines = out.splitlines()
        assert "tools github_get_pr,github_search_issues" in lines
        assert "json-tools github_get_pr,github_search_issues" in lines
        calls = [ln.split(" ", 3)[1:] for ln in lines if ln.startswith("call ")]
        assert [c[:2] for c in calls] == [
            ["github_get_pr", "ok"], ["github_delete_repo", "refused"],
            ["shell_exec", "refused"], ["github_search_issues", "ok"],
            ["github_search_issues", "refused"], ["github_get_pr", "ok"],
            ["github_get_pr", "refused"]], out
        assert "denied" in calls[1][2] and "no MCPRoute rule" in calls[2][2]
        assert "rate limit" in calls[4][2] and "maxCallsPerExecution" in calls[6][2]
        assert server.calls == ["github_get_pr", "github_search_issues", "github_get_pr"]
        def tool_calls() -> list[dict[str, Any]]:
            return [s for s in http_spans(dev, "TaskAgent", "mcp-user")
                    if s["attributes"].get("gen_ai.tool.name")]

        # Spans arrive in export batches: wait for every tool's, not for the first.
        recorded = until(lambda: (got := tool_calls()) and {
            "github_get_pr", "github_delete_repo", "github_search_issues"} <= {
            s["attributes"]["gen_ai.tool.name"] for s in got} and got,
            "not every MCP call was recorded")
        names = {s["attributes"]["gen_ai.tool.name"]: s["attributes"]["clrk.decision"]
                 for s in recorded}
        assert names["github_delete_repo"] == "deny"
        assert all(s["attributes"]["mcp.method.name"] == "tools/call" for s in recorded)
    finally:
        server.stop()


KEEPALIVE = """
import http.client, json, time
conn = http.client.HTTPSConnection("api.anthropic.com", timeout=30)
sockets, statuses = set(), []
body = json.dumps({"model": "claude-keepalive", "max_tokens": 5,
                   "messages": [{"role": "user", "content": "hi"}]})
end = time.monotonic() + 40
while time.monotonic() < end:
    conn.request("POST", "/v1/messages", body, {"content-type": "application/json"})
    r = conn.getresponse()
    r.read()
    sockets.add(id(conn.sock))
    statuses.append(r.status)
    time.sleep(0.1)
print("sockets", len(sockets))
print("statuses", ",".join(sorted({str(s) for s in statuses})))
"""


def invoke_in_background(dev: DevServer, gateway: str,
                         agent: str) -> tuple[dict[str, Any], threading.Thread]:
    """Once the gateway has its CA, invoke the agent on a thread: its answer lands in
    the dict, under "r"."""
    until(lambda: dev.kubectl("get", "egressgateway", gateway, "-o",
                              "jsonpath={.status.caSecretName}").stdout, "no CA yet")
    result: dict[str, Any] = {}
    runner = threading.Thread(target=lambda: result.update(r=invoke(dev, agent)))
    runner.start()
    return result, runner


def test_changes_apply_to_an_open_keep_alive_connection(
        dev: DevServer, registry: Registry, fake: FakeProviders) -> None:
    """A deny policy added and removed, then a route narrowed and widened, while the
    agent keeps one HTTPS connection open: each change takes effect on that same
    connection. The delays are printed (docs/benchmarks.md has the figures); the test
    does not time them."""
    fake.keys.pop("api.anthropic.com", None)
    route = ai_route("ka-route", "ka-gw", "anthropic")
    route["spec"]["rules"][0]["matches"][0]["models"] = ["claude-*"]
    apply(dev, provider_gateway("ka-gw", fake), route,
          task("ka-user", "ka-gw", f"{registry.host}/test/python:1", KEEPALIVE))
    result, runner = invoke_in_background(dev, "ka-gw", "ka-user")

    def seen() -> list[float]:
        return [s.at for s in fake.seen if (s.json() or {}).get("model") == "claude-keepalive"]

    def stops(change: str) -> None:
        t0 = time.monotonic()
        until(lambda: seen() and time.monotonic() - seen()[-1] > 1.0,
              f"traffic never stopped after {change}")
        print(f"{change}: refused {max(0.0, seen()[-1] - t0):.2f}s after the change")

    def resumes(change: str) -> None:
        t0, count = time.monotonic(), len(seen())
        until(lambda: len(seen()) > count, f"traffic never resumed after {change}")
        print(f"{change}: allowed {seen()[count] - t0:.2f}s after the change")

    until(lambda: len(seen()) >= 3, "the agent's calls never arrived")
    deny = {"apiVersion": G, "kind": "EgressDenyPolicy", "metadata": {"name": "ka-stop"},
            "spec": {"targetRef": {"kind": "AIProviderRoute", "name": "ka-route"}}}
    apply(dev, deny)
    stops("deny policy added")
    dev.kubectl("delete", "egressdenypolicy", "ka-stop")
    resumes("deny policy removed")
    route["spec"]["rules"][0]["matches"][0]["models"] = ["gpt-*"]
    apply(dev, route)
    stops("route narrowed")
    route["spec"]["rules"][0]["matches"][0]["models"] = ["claude-*"]
    apply(dev, route)
    resumes("route widened")
    runner.join(120)
    out = result["r"].text
    assert result["r"].status_code == 200, out
    assert "sockets 1" in out.splitlines(), out  # one connection throughout
    assert "statuses 200,403" in out.splitlines(), out


METERED = """
import http.client, json, time
conn = http.client.HTTPSConnection("api.anthropic.com", timeout=30)
sockets, statuses = set(), []

def call(stream=False, content_type="application/json"):
    body = json.dumps({"model": "claude-metered", "max_tokens": 5, "stream": stream,
                       "messages": [{"role": "user", "content": "hi"}]})
    conn.request("POST", "/v1/messages", body, {"content-type": content_type,
                                                "x-clrk-python": "0"})
    r = conn.getresponse()
    body = r.read()
    sockets.add(id(conn.sock))
    statuses.append(r.status)
    if r.status not in (200, 429):
        print("refused", r.status, r.getheader("server"), body[:300])
    return r.status

call()  # a new gateway: its routes reach Envoy only after their clusters, never a 503
call(stream=True)
call(stream=True, content_type="application/x-unknown")  # a body Envoy does not read
end = time.monotonic() + 60
while time.monotonic() < end and call() != 429:
    time.sleep(0.2)
print("sockets", len(sockets))
print("statuses", ",".join(str(s) for s in statuses))
"""


def test_envoy_meters_plain_calls_and_hands_over_to_python(
        dev: DevServer, registry: Registry, fake: FakeProviders) -> None:
    """A route with nothing for Python to decide per call: Envoy serves its calls
    alone, injects the key and a traceparent in the execution's trace, and records the
    usage of JSON answers (streams, and bodies Envoy cannot read, still go through the
    policy service), and counts their tokens toward the execution. Once the route gets
    a token budget, the same open connection's calls go through the policy service,
    which refuses the next one: the execution has already spent the budget."""
    fake.keys["api.anthropic.com"] = KEY
    dev.kubectl("create", "secret", "generic", "metered-key", f"--from-literal=k={KEY}")
    cred = {"apiVersion": G, "kind": "CredentialInjectionPolicy",
            "metadata": {"name": "metered-key"},
            "spec": {"targetRef": {"kind": "AIProviderRoute", "name": "metered"},
                     "secretRef": {"name": "metered-key"}, "secretKey": "k",
                     "target": "Header", "headerName": "x-api-key"}}
    apply(dev, provider_gateway("metered-gw", fake), ai_route("metered", "metered-gw",
                                                              "anthropic"), cred,
          task("metered-user", "metered-gw", f"{registry.host}/test/python:1", METERED))
    result, runner = invoke_in_background(dev, "metered-gw", "metered-user")

    def seen() -> list[Any]:
        return [s for s in fake.seen if (s.json() or {}).get("model") == "claude-metered"]


    def metered() -> list[dict[str, Any]]:
        return [s for s in http_spans(dev, "TaskAgent", "metered-user")
                if s["attributes"].get("clrk.metered_by") == "envoy"]

    # Two plain calls recorded, hence counted (36 tokens each, and 72 streamed): a
    # budget of 100 per execution is spent already.
    until(lambda: len(metered()) >= 2, "no call metered by Envoy was recorded")
    route = ai_route("metered", "metered-gw", "anthropic")
    route["spec"]["rules"][0]["filters"] = [
        {"type": "TokenBudget", "tokenBudget": {"maxTokensPerExecution": 100}}]
    apply(dev, route)
    runner.join(120)
    out = result["r"].text
    assert result["r"].status_code == 200, out
    assert "sockets 1" in out.splitlines(), out  # one connection throughout
    statuses = out.split("statuses ")[1].split()[0].split(",")
    assert statuses[-1] == "429" and set(statuses[:-1]) == {"200"}, out
    assert all(s.headers["x-api-key"] == KEY for s in seen())
    assert not any(h.startswith("x-clrk-") for s in seen() for h in s.headers)

    def envoys(calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [c for c in calls if c["attributes"].get("clrk.metered_by") == "envoy"]

    def recorded() -> list[dict[str, Any]]:
        # Each kind of span on its own: the two are written by different processes.
        found = http_spans(dev, "TaskAgent", "metered-user")
        python = [c for c in found if c["attributes"].get("clrk.metered_by") != "envoy"]
        done = len(envoys(found)) >= statuses.count("200") - 2 and len(python) >= 3
        return found if done else []

    calls = until(recorded, "not every call has a span")
    by_envoy = envoys(calls)
    by_python = [c for c in calls if c["attributes"].get("clrk.metered_by") != "envoy"]
    assert by_envoy and len(by_python) == 3, [c["attributes"] for c in calls]
    for span in by_envoy:  # the plain calls before the budget
        attrs = span["attributes"]
        assert (attrs["gen_ai.provider.name"], attrs["gen_ai.request.model"],
                attrs["gen_ai.request.stream"], attrs["gen_ai.usage.input_tokens"],
                attrs["gen_ai.usage.output_tokens"], attrs["clrk.route"]) == (
            "anthropic", "claude-metered", "false", "12", "24", "default/metered")
        request = next(e for e in span["events"] if e["name"] == "http.request")
        assert request["attributes"]["http.request.header.x-api-key"] == "[redacted]"
    # Envoy's traceparent: the execution's trace, the span's own id.
    parents = {s.headers["traceparent"].split("-")[2] for s in seen()}
    assert {s.headers["traceparent"].split("-")[1] for s in seen()} == \
        {calls[0]["traceId"]}
    assert {s["spanId"] for s in by_envoy} <= parents
    streamed = [c for c in by_python if c["attributes"]["gen_ai.request.stream"] == "true"]
    assert [c["attributes"]["gen_ai.usage.output_tokens"] for c in streamed] == ["24", "24"]
    plain = [c["attributes"]["http.response.status_code"] for c in by_python
             if c["attributes"]["gen_ai.request.stream"] == "false"]
    assert plain == ["429"], plain  # the first call the policy service saw was refused
    refused = next(c for c in by_python if c["attributes"]["gen_ai.request.stream"] == "false")
    assert "maxTokensPerExecution" in refused["attributes"]["clrk.deny_reason"]
    assert_nowhere(dev, KEY, [("TaskAgent", "metered-user")])


GH_CALLS = """
for i in 1 2; do
  curl -sS -o /dev/null -w '%{http_code} ' -H 'authorization: Bearer agent-placeholder' \\
    https://api.github.com/user
  curl -sS -H 'authorization: Bearer agent-placeholder' https://api.github.com/user
  echo
done
"""


LATE_KEY = """
import http.client, json, time
conn = http.client.HTTPSConnection("api.anthropic.com", timeout=30)
statuses = []
end = time.monotonic() + 90
while time.monotonic() < end:
    conn.request("POST", "/v1/messages", json.dumps({"model": "claude-late", "max_tokens": 5,
                 "messages": [{"role": "user", "content": "hi"}]}),
                 {"content-type": "application/json"})
    r = conn.getresponse()
    r.read()
    if not statuses or statuses[-1] != r.status:
        statuses.append(r.status)
    if r.status == 200:
        break
    time.sleep(0.2)
print("statuses", ",".join(str(s) for s in statuses))
"""


def test_a_secret_that_comes_after_its_policy(
        dev: DevServer, registry: Registry, fake: FakeProviders) -> None:
    """A credential policy whose Secret does not exist yet: Envoy (serving the route
    alone) answers 503 and names the Secret; once the Secret is created, the same open
    connection's next call carries the key, with no other change to wake the gateway."""
    fake.keys["api.anthropic.com"] = KEY
    cred = {"apiVersion": G, "kind": "CredentialInjectionPolicy",
            "metadata": {"name": "late-key"},
            "spec": {"targetRef": {"kind": "AIProviderRoute", "name": "late"},
                     "secretRef": {"name": "late-key"}, "secretKey": "k",
                     "target": "Header", "headerName": "x-api-key"}}
    apply(dev, provider_gateway("late-gw", fake), ai_route("late", "late-gw", "anthropic"),
          cred, task("late-user", "late-gw", f"{registry.host}/test/python:1", LATE_KEY))
    result, runner = invoke_in_background(dev, "late-gw", "late-user")
    until(lambda: any(s["attributes"].get("http.response.status_code") == "503"
                      for s in http_spans(dev, "TaskAgent", "late-user")),
          "no refused call was recorded", timeout=150)  # the agent's own loop is 90 s
    dev.kubectl("create", "secret", "generic", "late-key", f"--from-literal=k={KEY}")
    runner.join(150)
    out = result["r"].text
    assert "statuses 503,200" in out.splitlines(), out
    seen = [s for s in fake.seen if (s.json() or {}).get("model") == "claude-late"]
    assert seen and all(s.headers["x-api-key"] == KEY for s in seen)


def test_l4_route_on_a_terminating_listener(dev: DevServer, registry: Registry,
                                            fake: FakeProviders) -> None:
    """An EgressL4Route hostname on a TLS Terminate listener is served by Envoy alone:
    the credential header from the Secret replaces the agent's, an EgressDenyPolicy
    answers with its status and message, and every request is recorded; a rate limit
    (which needs the policy service) is enforced on the same route."""
    token = "ghp-clrk-test-7777"
    fake.keys["api.github.com"] = token
    dev.kubectl("create", "secret", "generic", "gh-token", f"--from-literal=token={token}")
    gw = provider_gateway("gh-gw", fake)
    gw["spec"]["upstreamTLS"]["hostAliases"].append(
        {"hostname": "api.github.com", "address": f"127.0.0.1:{fake.port}"})
    route = {"apiVersion": G, "kind": "EgressL4Route", "metadata": {"name": "github"},
             "spec": {"parentRefs": [{"name": "gh-gw"}], "rules": [{"matches": [
                 {"destinationHostnames": ["api.github.com"], "ports": [{"port": 443}]}]}]}}
    cred = {"apiVersion": G, "kind": "CredentialInjectionPolicy",
            "metadata": {"name": "github-token"},
            "spec": {"parentRefs": [{"kind": "EgressL4Route", "name": "github"}],
                     "secretRef": {"name": "gh-token"}, "secretKey": "token",
                     "target": "Header", "headerName": "Authorization",
                     "valuePrefix": "Bearer "}}
    agent = task("gh-user", "gh-gw", f"{registry.host}/test/python:1", "")
    agent["spec"]["template"]["spec"]["command"] = ["sh", "-c", GH_CALLS]
    apply(dev, gw, route, cred, agent)
    out = poll(lambda: invoke(dev, "gh-user").text, lambda t: t.startswith("200"),
               "the L4 route never answered through Envoy")
    assert out.splitlines()[0] == '200 {"ok": true}', out
    seen = [s for s in fake.seen if s.headers.get("host") == "api.github.com"]
    assert seen[-1].headers["authorization"] == f"Bearer {token}"
    assert not any(h.startswith("x-envoy-") or h == "x-forwarded-for"
                   for h in seen[-1].headers), list(seen[-1].headers)
    spans_found = until(lambda: [s for s in http_spans(dev, "TaskAgent", "gh-user")
                                 if s["attributes"]["clrk.route"] == "default/github"],
                        "no span for the native route")
    headers = spans_found[0]["events"][0]["attributes"]
    assert headers["http.request.header.authorization"] == "[redacted]"
    # The agent's own x-envoy-retry-on is not obeyed: the upstream's 503 reaches it.
    fake.fail_next["api.github.com"] = 1
    assert invoke(dev, "gh-user").text.startswith("503"), "Envoy obeyed the agent's retries"

    deny = {"apiVersion": G, "kind": "EgressDenyPolicy", "metadata": {"name": "block-github"},
            "spec": {"targetRef": {"kind": "EgressL4Route", "name": "github"},
                     "denyResponse": {"statusCode": 451, "message":
                                      "Outbound to GitHub is currently disabled by policy."}}}
    apply(dev, deny)
    out = poll(lambda: invoke(dev, "gh-user").text, lambda t: t.startswith("451"),
               "the deny policy never applied")
    assert "Outbound to GitHub is currently disabled by policy." in out
    dev.kubectl("delete", "egressdenypolicy", "block-github")
    limit = {"apiVersion": G, "kind": "RateLimitPolicy", "metadata": {"name": "gh-once"},
             "spec": {"targetRef": {"kind": "EgressL4Route", "name": "github"},
                      "requests": 1, "window": "1h", "scope": "PerExecution"}}
    apply(dev, limit)
    out = poll(lambda: invoke(dev, "gh-user").text,
               lambda t: t.startswith("200") and "429" in t, "the rate limit never applied")
    # Each round is two requests: the first of the execution passes, the rest do not.
    assert out.split()[0] == "200" and "rate limit gh-once" in out, out
    assert "\n429 " in f"\n{out}", out
    assert_nowhere(dev, token, [("TaskAgent", "gh-user")])


def test_logging_policy_captures_bodies_and_redacts(dev: DevServer, registry: Registry,
                                                    fake: FakeProviders) -> None:
    """A LoggingPolicy on a route turns on request and response capture (the gateway
    captures nothing itself) and adds its own headers to the redaction list."""
    import base64

    fake.keys.pop("api.anthropic.com", None)
    lp = {"apiVersion": G, "kind": "LoggingPolicy", "metadata": {"name": "capture-all"},
          "spec": {"targetRef": {"kind": "AIProviderRoute", "name": "lp-route"},
                   "captureRequest": True, "captureResponse": True,
                   "redactHeaders": ["X-Team-Secret"]}}
    apply(dev, provider_gateway("lp-gw", fake), ai_route("lp-route", "lp-gw", "anthropic"), lp,
          calls_agent("lp-user", "lp-gw", f"{registry.host}/test/python:1", [
              ["one", ANTHROPIC_URL, claude("claude-logged"), {"x-team-secret": "s3cr3t",
                                                               "x-visible": "shown"}]]))
    got = poll(lambda: results(dev, "lp-user"), lambda r: r.get("one", {}).get("status")
               == 200, "the call never went through")
    assert got["one"]["status"] == 200
    # The call that went through (an earlier execution may have met a worker that had
    # not seen the route yet).
    span = until(lambda: [s for s in http_spans(dev, "TaskAgent", "lp-user")
                          if s["attributes"].get("http.response.status_code") == "200"],
                 "no span of the call")[-1]
    request = next(e for e in span["events"] if e["name"] == "http.request")["attributes"]
    response = next(e for e in span["events"] if e["name"] == "http.response")["attributes"]
    assert request["http.request.header.x-team-secret"] == "[redacted]"
    assert request["http.request.header.x-visible"] == "shown"
    assert json.loads(base64.b64decode(request["http.request.body"]))["model"] == \
        "claude-logged"
    assert json.loads(base64.b64decode(response["http.response.body"]))["usage"][
        "output_tokens"] == 24
    assert span["attributes"]["clrk.http.response.body.truncated"] == "false"


def test_backend_refs_model_rewrites_and_retries(dev: DevServer, registry: Registry,
                                                 fake: FakeProviders) -> None:
    """An AIProviderRoute rule with backendRefs sends the agent's OpenAI call to its
    Backend (host rewritten, model renamed by the Backend's modelRewrites); an agent's
    own x-envoy-* retry headers are dropped, and a FallbackRoutingPolicy's retries get
    a request past the Backend's 503s."""
    fake.keys.pop("api.openai.com", None)
    backend = {"apiVersion": G, "kind": "Backend", "metadata": {"name": "llm-backend"},
               "spec": {"host": "llm-backend.test", "port": 443, "schema": "openai",
                        "modelRewrites": [{"from": "gpt-*", "to": "served-model"}]}}
    gw = provider_gateway("be-gw", fake)
    gw["spec"]["upstreamTLS"]["hostAliases"].append(
        {"hostname": "llm-backend.test", "address": f"127.0.0.1:{fake.port}"})
    route = ai_route("be-route", "be-gw", "openai",
                     backendRefs=[{"name": "llm-backend", "weight": 1}])
    chat = {"model": "gpt-x", "messages": [{"role": "user", "content": "hi"}]}
    url = "https://api.openai.com/v1/chat/completions"
    agent = calls_agent("be-user", "be-gw", f"{registry.host}/test/python:1",
                        [["call", url, chat, {"x-envoy-max-retries": "5",
                                              "x-envoy-retry-on": "5xx"}]])
    apply(dev, backend, gw, route, agent)
    got = poll(lambda: results(dev, "be-user"), lambda r: r.get("call", {}).get("status")
               == 200, "the Backend never answered")
    seen = [s for s in fake.seen if s.headers.get("host") == "llm-backend.test"]
    assert seen and seen[-1].json()["model"] == "served-model"
    assert "x-envoy-max-retries" not in seen[-1].headers and \
        "x-clrk-backend" not in seen[-1].headers
    span = until(lambda: [s for s in http_spans(dev, "TaskAgent", "be-user")
                          if s["attributes"].get("clrk.backend")], "no span")[-1]
    assert span["attributes"]["clrk.backend.model"] == "served-model"
    assert span["attributes"]["gen_ai.request.model"] == "gpt-x"
    assert got["call"]["status"] == 200

    fake.fail_next["llm-backend.test"] = 1  # no policy: the 503 reaches the agent
    assert results(dev, "be-user")["call"]["status"] == 503
    apply(dev, {"apiVersion": G, "kind": "FallbackRoutingPolicy",
                "metadata": {"name": "be-retry"},
                "spec": {"targetRef": {"kind": "AIProviderRoute", "name": "be-route"},
                         "retry": {"attempts": 2, "retryOn": [503]}}})
    time.sleep(1)  # the worker's watch delivers the policy
    fake.fail_next["llm-backend.test"] = 2
    before = len(fake.seen)
    assert results(dev, "be-user")["call"]["status"] == 200
    assert len(fake.seen) - before == 3  # two 503s retried, then the answer


def test_plain_http_listener(dev: DevServer, registry: Registry) -> None:
    """An HTTP listener serves an EgressL4Route hostname's plain HTTP: the credential
    header is injected and the request recorded, as on a terminating listener."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    seen: list[dict[str, str]] = []

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            seen.append({k.lower(): v for k, v in self.headers.items()})
            self.send_response(200)
            self.send_header("content-length", "6")
            self.end_headers()
            self.wfile.write(b"plain\n")

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        dev.kubectl("create", "secret", "generic", "plain-token",
                    "--from-literal=token=plain-secret-8888")
        gw = {"apiVersion": G, "kind": "EgressGateway", "metadata": {"name": "plain-gw"},
              "spec": {"listeners": [{"name": "web", "protocol": "HTTP", "port": 80}],
                       "upstreamTLS": {"hostAliases": [{
                           "hostname": "plain.test",
                           "address": f"127.0.0.1:{server.server_address[1]}"}]}}}
        route = {"apiVersion": G, "kind": "EgressL4Route", "metadata": {"name": "plain"},
                 "spec": {"parentRefs": [{"name": "plain-gw"}], "rules": [{"matches": [
                     {"destinationHostnames": ["plain.test"], "ports": [{"port": 80}]}]}]}}
        cred = {"apiVersion": G, "kind": "CredentialInjectionPolicy",
                "metadata": {"name": "plain-token"},
                "spec": {"parentRefs": [{"kind": "EgressL4Route", "name": "plain"}],
                         "secretRef": {"name": "plain-token"}, "secretKey": "token",
                         "headerName": "x-token"}}
        agent = task("plain-user", "plain-gw", f"{registry.host}/test/python:1", "")
        agent["spec"]["template"]["spec"]["command"] = [
            "sh", "-c", "curl -sS -H 'x-token: from-agent' http://plain.test/thing"]
        apply(dev, gw, route, cred, agent)
        out = poll(lambda: invoke(dev, "plain-user").text, lambda t: t.strip() == "plain",
                   "the plain HTTP route never answered")
        assert out.strip() == "plain"
        assert seen[-1]["x-token"] == "plain-secret-8888"
        span = until(lambda: [s for s in http_spans(dev, "TaskAgent", "plain-user")
                              if s["attributes"]["url.scheme"] == "http"], "no span")[0]
        assert span["events"][0]["attributes"]["http.request.header.x-token"] == "[redacted]"
        assert_nowhere(dev, "plain-secret-8888", [("TaskAgent", "plain-user")])
    finally:
        server.shutdown()
        server.server_close()
