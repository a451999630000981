"""LLM traffic through the gateway, from inside real sandboxes: TLS terminated with a
leaf from the gateway's CA, the credential injected at the proxy, tokens counted from
the provider's own answer, and every call recorded with its secrets redacted. The
providers are fakes on loopback (tests/fake_providers.py) that the gateway reaches
through ``upstreamTLS.hostAliases`` and trusts through its additional trust bundle."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import DevServer, start_dev
from tests.fake_providers import FakeProviders
from tests.images import Registry, python_base

pytestmark = pytest.mark.e2e
KEY = "sk-ant-test-3f9c1e7d5b2a4c68"  # what only the proxy and the fake may ever see
G = "clrk.apoxy.dev/v1alpha1"


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeProviders]:
    providers = FakeProviders(keys={"api.anthropic.com": KEY})
    providers.start()
    yield providers
    providers.stop()


@pytest.fixture(scope="module")
def dev(registry: Registry, fake: FakeProviders,
        tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevServer]:
    registry.push("test/python", "1", python_base())
    server = start_dev(tmp_path_factory.mktemp("ai-egress") / "clrk", "--insecure-registry",
                       registry.host, workers=1)
    try:
        deadline = time.monotonic() + 60
        while server.kubectl("get", "wp", "default", "-o",
                             "jsonpath={.status.readyReplicas}", check=False).stdout != "1":
            assert time.monotonic() < deadline, "the worker never became ready"
            time.sleep(0.3)
        ca = tmp_path_factory.mktemp("fake-ca") / "ca.crt"
        ca.write_bytes(fake.ca.cert_pem)
        server.kubectl("create", "secret", "generic", "provider-ca", f"--from-file=ca.crt={ca}")
        yield server
    finally:
        server.stop()


def apply(dev: DevServer, *docs: dict[str, Any]) -> None:
    dev.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(docs))


def provider_gateway(name: str, fake: FakeProviders, policy: str = "deny-all",
                     **spec: Any) -> dict[str, Any]:
    aliases = [{"hostname": h, "address": f"127.0.0.1:{fake.port}"}
               for h in ("api.anthropic.com", "api.openai.com",
                         "generativelanguage.googleapis.com", "mcp.example.com")]
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


ECHO_BOT = """
echo "ANTHROPIC_API_KEY=${ANTHROPIC_API_KEY:-unset}"
env | grep -c sk-ant || true
while :; do
  curl -sS https://api.anthropic.com/v1/messages \\
    -H 'anthropic-version: 2023-06-01' \\
    -H 'content-type: application/json' \\
    --data '{"model":"claude-haiku-4-5","max_tokens":64,"messages":[{"role":"user","content":"Say hello."}]}'
  echo
  sleep 5
done
"""


def test_quickstart_echo_bot(dev: DevServer, registry: Registry,
                             fake: FakeProviders) -> None:
    """The quickstart: a curl loop to https://api.anthropic.com with no key; the fake
    upstream sees the real key, the agent never does, and the span shows it redacted
    with the provider, model and token counts."""
    dev.kubectl("create", "secret", "generic", "anthropic-credentials",
                f"--from-literal=api-key={KEY}")
    examples = Path(__file__).resolve().parents[2] / "examples" / "echo-bot" / "manifests"
    docs = [d for f in sorted(examples.glob("*.yaml"))
            for d in yaml.safe_load_all(f.read_text()) if d]
    for doc in docs:
        if doc["kind"] == "EgressGateway":
            doc["spec"] = {**provider_gateway("echo-bot", fake)["spec"],
                           "otlp": doc["spec"]["otlp"]}
        if doc["kind"] == "DaemonAgent":
            doc["spec"]["template"]["spec"].update(
                image=f"{registry.host}/test/python:1", args=[ECHO_BOT])
    apply(dev, *docs)
    until(lambda: any(s.path == "/v1/messages" for s in fake.seen),
          "the fake upstream never saw the agent's call")
    call = next(s for s in fake.seen if s.path == "/v1/messages")
    assert call.headers["x-api-key"] == KEY
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
    dev.kubectl("delete", "daemonagent", "echo-bot")


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
    for s in calls:
        headers = next(e for e in s["events"] if e["name"] == "http.request")["attributes"]
        assert all(v == "[redacted]" for k, v in headers.items()
                   if k.split(".")[-1] in ("x-api-key", "authorization", "x-goog-api-key"))
    assert_nowhere(dev, keys["openai"], [("TaskAgent", "sdk-user")])
