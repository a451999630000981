"""An agent's own OpenTelemetry spans and logs: the official Python SDK in a real sandbox
exports to $OTEL_EXPORTER_OTLP_ENDPOINT (its worker), continuing $TRACEPARENT, and the
spans are stored in the invocation's trace under its span, beside the gateway's, for a
cold start, for a warm sandbox started before its invocation existed, and for a
DaemonAgent's run."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from tests.conftest import DevServer, start_dev
from tests.images import Registry, python_base

pytestmark = pytest.mark.e2e
G = "clrk.apoxy.dev/v1alpha1"
T = TypeVar("T")

AGENT = r"""
import gzip, json, os, sys, urllib.error, urllib.request
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.propagate import extract
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

sys.stdin.read()
provider = TracerProvider(resource=Resource.create({"service.name": "otel-agent"}))
provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
tracer = provider.get_tracer("agent.py")
parent = extract({"traceparent": os.environ["TRACEPARENT"]})
with tracer.start_as_current_span("agent work", context=parent) as work:
    work.set_attribute("work.items", 3)
    work.set_attribute("clrk.invocation", "forged")
    with tracer.start_as_current_span("inner step"):
        pass
with tracer.start_as_current_span("detached"):  # a root of its own: moved under ours
    pass
assert provider.force_flush(20_000)

def post(path, body, ctype, **headers):
    req = urllib.request.Request(os.environ["OTEL_EXPORTER_OTLP_ENDPOINT"] + path,
                                 data=body, headers={"Content-Type": ctype, **headers})
    try:
        with urllib.request.urlopen(req, timeout=20) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()

log = {"resourceLogs": [{"scopeLogs": [{"logRecords": [{
    "timeUnixNano": "1700000000000000000", "body": {"stringValue": "agent log line"}}]}]}]}
print(json.dumps({
    "traceparent": os.environ["TRACEPARENT"],
    "endpoint": os.environ["OTEL_EXPORTER_OTLP_ENDPOINT"],
    "log": post("/v1/logs", gzip.compress(json.dumps(log).encode()), "application/json",
                **{"Content-Encoding": "gzip"}),
    "bad": post("/v1/traces", b"{not json", "application/json"),
    "type": post("/v1/traces", b"x", "text/plain")[0]}))
"""

DAEMON = r"""
import os, time
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.propagate import extract
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter()))
parent = extract({"traceparent": os.environ["TRACEPARENT"]})
with provider.get_tracer("daemon.py").start_as_current_span("daemon work", context=parent):
    pass
assert provider.force_flush(20_000)
print("exported", flush=True)
time.sleep(600)
"""


@pytest.fixture(scope="module")
def dev(registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevServer]:
    registry.push("test/python", "otel", python_base())
    server = start_dev(tmp_path_factory.mktemp("otlp") / "clrk", "--insecure-registry",
                       registry.host, workers=1)
    try:
        server.wait_for_worker()
        yield server
    finally:
        server.stop()


def agent(dev: DevServer, registry: Registry, name: str, **spec: object) -> None:
    env = spec.pop("env", None)
    template: dict[str, Any] = {"image": f"{registry.host}/test/python:otel",
                                "command": ["/opt/venv/bin/python", "-c", AGENT]}
    if env:
        template["env"] = env
    doc = {"apiVersion": G, "kind": "TaskAgent", "metadata": {"name": name},
           "spec": {"workerPoolRef": "default", "timeout": "60s", **spec,
                    "template": {"spec": template}}}
    dev.kubectl("apply", "-f", "-", input=json.dumps(doc))


def call(dev: DevServer, name: str) -> httpx.Response:
    r = httpx.post(f"{dev.ingress}/", content=b"{}", timeout=120, headers={
        "X-Clrk-TaskAgent": f"default/{name}", "content-type": "application/json"})
    assert r.status_code == 200, (r.status_code, r.headers, r.text)
    return r


def until(check: Callable[[], T | None], what: str, timeout: float = 30) -> T:
    deadline = time.monotonic() + timeout
    while not (got := check()):
        assert time.monotonic() < deadline, what
        time.sleep(0.5)
    return got


def invocation(dev: DevServer, name: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(dev.kubectl("get", "invocation", name, "-o",
                                                 "json").stdout)
    return doc


def spans(dev: DevServer, agent_name: str, inv: str) -> list[dict[str, Any]]:
    out = dev.kubectl("get", "--raw", f"/apis/{G}/namespaces/default/taskagents/"
                      f"{agent_name}/traces?invocation={inv}").stdout
    return list(json.loads(out)["items"])


def check_traced(dev: DevServer, agent_name: str, r: httpx.Response) -> dict[str, Any]:
    """The agent's spans are in its invocation's trace, under the invocation's span."""
    out = r.json()
    inv = invocation(dev, r.headers["x-clrk-invocation"])
    trace_id, span_id = inv["spec"]["traceId"], inv["spec"]["spanId"]
    assert out["traceparent"] == f"00-{trace_id}-{span_id}-01", (out, inv["spec"])
    assert out["endpoint"].startswith("http://10.213.") and "/v1" not in out["endpoint"]
    name = inv["metadata"]["name"]
    found = until(lambda: s if len(s := spans(dev, agent_name, name)) >= 4 else None,
                  f"the agent's spans of {name}")
    by_name = {s["name"]: s for s in found}
    assert set(by_name) == {f"invoke {agent_name}", "agent work", "inner step",
                            "detached"}, found
    assert all(s["traceId"] == trace_id for s in found), found
    ours = by_name[f"invoke {agent_name}"]
    assert ours["spanId"] == span_id and ours["parentSpanId"] == ""
    work = by_name["agent work"]
    assert work["parentSpanId"] == span_id  # continued from TRACEPARENT
    assert by_name["inner step"]["parentSpanId"] == work["spanId"]
    assert by_name["detached"]["parentSpanId"] == span_id  # a root, re-parented
    assert work["attributes"]["work.items"] == "3"
    assert work["attributes"]["clrk.invocation"] == name  # stamped, not the agent's
    assert work["attributes"]["clrk.agent.name"] == agent_name
    # /v1/logs took a gzip'd JSON export (200 comes once the API server stored it); bad
    # bodies and types are refused per OTLP/HTTP.
    assert out["log"] == [200, "{}"], out
    assert out["bad"][0] == 400 and "not an OTLP traces JSON body" in out["bad"][1], out
    assert out["type"] == 415
    return inv


def test_a_cold_start_exports_into_the_invocations_trace(dev: DevServer,
                                                          registry: Registry) -> None:
    agent(dev, registry, "otel-cold")
    r = call(dev, "otel-cold")
    inv = check_traced(dev, "otel-cold", r)
    assert inv["status"]["warmStart"] is False
    shown = dev.clrk("agents", "traces", "otel-cold").stdout
    name = inv["metadata"]["name"]
    assert f"  {name}  Succeeded  " in shown, shown
    assert "\n  └ agent work  Unset  " in shown and "\n    └ inner step  Unset  " in shown, \
        shown


def test_a_warm_sandbox_exports_into_the_invocation_it_serves(dev: DevServer,
                                                              registry: Registry) -> None:
    until(lambda: not sandboxes(dev), "the earlier sandboxes gone")
    agent(dev, registry, "otel-warm", warmPoolSize=1)
    warm = until(lambda: s if len(s := sandboxes(dev)) == 1 else None, "a warm sandbox",
                 timeout=60)
    for _ in range(2):  # the second runs in the refilled sandbox: each has its own trace
        r = call(dev, "otel-warm")
        inv = check_traced(dev, "otel-warm", r)
        assert inv["status"]["warmStart"] is True, inv["status"]
        warm = until(_refilled(dev, warm), "the refill", timeout=60)
    dev.kubectl("delete", "ta", "otel-warm")
    until(lambda: not sandboxes(dev), "eviction on deletion")


def test_a_daemon_exports_into_its_runs_trace(dev: DevServer, registry: Registry) -> None:
    doc = {"apiVersion": G, "kind": "DaemonAgent", "metadata": {"name": "otel-daemon"},
           "spec": {"workerPoolRef": "default", "restartPolicy": "Always", "template": {
               "spec": {"image": f"{registry.host}/test/python:otel",
                        "command": ["/opt/venv/bin/python", "-c", DAEMON]}}}}
    dev.kubectl("apply", "-f", "-", input=json.dumps(doc))
    try:
        run = until(lambda: _runs(dev, "otel-daemon"), "the daemon's run", timeout=60)[0]
        trace_id, span_id = run["spec"]["traceId"], run["spec"]["spanId"]
        url = f"/apis/{G}/namespaces/default/daemonagents/otel-daemon/traces"
        found = until(lambda: [s for s in json.loads(dev.kubectl(
            "get", "--raw", url).stdout)["items"] if s["name"] == "daemon work"],
            "the daemon's span", timeout=60)
        assert (found[0]["traceId"], found[0]["parentSpanId"]) == (trace_id, span_id)
        assert found[0]["attributes"]["clrk.invocation"] == run["metadata"]["name"]
        assert found[0]["attributes"]["clrk.agent.kind"] == "DaemonAgent"
    finally:
        dev.kubectl("delete", "daemonagent", "otel-daemon")


def _runs(dev: DevServer, name: str) -> list[dict[str, Any]]:
    out = dev.kubectl("get", "inv", "-l", f"clrk.apoxy.dev/agent={name}", "-o", "json").stdout
    return list(json.loads(out)["items"])


def test_the_manifest_env_wins(dev: DevServer, registry: Registry) -> None:
    mine = "00-11111111111111111111111111111111-2222222222222222-01"
    agent(dev, registry, "otel-own", env=[{"name": "TRACEPARENT", "value": mine}])
    out = call(dev, "otel-own").json()
    assert out["traceparent"] == mine
    assert out["endpoint"].startswith("http://10.213.")


def sandboxes(dev: DevServer) -> set[str]:
    root = Path(dev.data_dir) / "workers" / "worker-0" / "sandboxes" / "runsc"
    out = subprocess.run(["runsc", "--root", str(root), "list", "--quiet"],
                         capture_output=True, text=True).stdout
    return set(out.split())


def _refilled(dev: DevServer, before: set[str]) -> Callable[[], set[str] | None]:
    """One warm sandbox again, not the one that served."""
    def check() -> set[str] | None:
        now = sandboxes(dev)
        return now if len(now) == 1 and now != before else None
    return check
