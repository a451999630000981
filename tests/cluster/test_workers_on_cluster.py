"""clrk end to end through the test cluster: the installed control plane and two worker
processes run as their pods would (tests/worker_pods.py). Word-count answers through
kube-apiserver's ``invoke`` and through the ingress; the quickstart's echo-bot calls a
fake Anthropic through its EgressGateway with the key injected and never seen;
executions spread over both workers; a worker killed with -9 fails only its own
executions, and its DaemonAgent is placed on the other."""

from __future__ import annotations

import asyncio
import json
import signal
import ssl
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from clrk.worker.main import HEARTBEAT_SECONDS
from clrk.worker.protocol import ALIVE_TIMEOUT
from tests.clrk_on_kube import clrk
from tests.cluster.conftest import ClrkOnKube
from tests.fake_providers import FakeProviders, serving
from tests.images import (
    Layer,
    Registry,
    build,
    busybox_recipe,
    python_base,
    with_layer,
    word_count_image,
)
from tests.kube_cluster import AGGREGATED_ADDRESS, free_port
from tests.worker_pods import (
    NS,
    WorkerPod,
    get,
    mount_point,
    ready_workers,
    start_worker_pod,
    until,
)

pytestmark = pytest.mark.cluster
API = "/apis/clrk.apoxy.dev/v1alpha1"
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
INGRESS = f"http://{AGGREGATED_ADDRESS}:8080"
KEY = "sk-ant-cluster-7f3a91"
NAMES = ("default-workers-5c8d9-aaaaa", "default-workers-5c8d9-bbbbb")


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeProviders]:
    yield from serving({"api.anthropic.com": KEY})


@pytest.fixture(scope="module")
def pods(clrk_on_kube: ClrkOnKube, registry: Registry,
         tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[WorkerPod]]:
    cluster = clrk_on_kube.cluster
    registry.push("test/shell", "1", build(busybox_recipe(Entrypoint=["/bin/sh", "-c"])))
    registry.push("test/word-count", "0.1", word_count_image())
    echo = (EXAMPLES / "echo-bot" / "agent.py").read_bytes()
    registry.push("test/echo-bot", "0.1", with_layer(
        python_base(), Layer({"agent.py": echo}), Entrypoint=["python3", "/agent.py"]))
    directory = tmp_path_factory.mktemp("worker-pods")
    with mount_point():
        workers: list[WorkerPod] = []
        try:
            for index, name in enumerate(NAMES):
                workers.append(start_worker_pod(cluster, name, directory / name, registry,
                                                index))
            until(lambda: ready_workers(cluster) == 2
                  or any(w.proc.poll() is not None for w in workers),
                  "the two worker pods never registered")
            for w in workers:
                assert w.proc.poll() is None, w.log_text()[-3000:]
            yield workers
        finally:
            for w in workers:
                if w.proc.poll() is not None:  # killed: restarted, it sweeps what it left
                    w.restart()
                w.stop()


def apply(c: ClrkOnKube, *docs: dict[str, Any]) -> None:
    c.cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(docs))


def task_agent(name: str, image: str, script: str, timeout: str = "120s"
               ) -> dict[str, Any]:
    spec: dict[str, Any] = {"image": image, "command": ["/bin/sh", "-c", script]}
    return {"apiVersion": "clrk.apoxy.dev/v1alpha1", "kind": "TaskAgent",
            "metadata": {"name": name, "namespace": NS},
            "spec": {"workerPoolRef": "default", "timeout": timeout,
                     "template": {"spec": spec}}}


def ready(c: ClrkOnKube, kind: str, name: str) -> None:
    until(lambda: ((get(c.cluster, kind, name, "-n", NS) or {}).get("status") or {})
          .get("latestReadyRevisionName"), f"{name} has no ready revision")


def invocation(c: ClrkOnKube, name: str) -> dict[str, Any]:
    inv = get(c.cluster, "invocation", name, "-n", NS)
    assert inv is not None, name
    return dict(inv)


def through_kube(c: ClrkOnKube, agent: str, body: dict[str, Any]) -> httpx.Response:
    """POST …/taskagents/<agent>/invoke to kube-apiserver, as any client would."""
    return httpx.post(f"{c.cluster.url}{API}/namespaces/{NS}/taskagents/{agent}/invoke",
                      json=body, timeout=180,
                      verify=ssl.create_default_context(cafile=str(c.cluster.ca_file)),
                      headers={"Authorization": f"Bearer {c.cluster.admin_token}"})


def through_ingress(agent: str, body: bytes = b"{}") -> httpx.Response:
    return httpx.post(f"{INGRESS}/", content=body, timeout=180, headers={
        "X-Clrk-TaskAgent": f"{NS}/{agent}", "content-type": "application/json"})


def test_word_count_through_kube_apiserver_and_the_ingress(clrk_on_kube: ClrkOnKube,
                                                           pods: list[WorkerPod],
                                                           registry: Registry) -> None:
    c = clrk_on_kube
    doc = yaml.safe_load((EXAMPLES / "word-count" / "taskagent.yaml").read_text())
    doc["metadata"]["namespace"] = NS
    doc["spec"]["template"]["spec"]["image"] = f"{registry.host}/test/word-count:0.1"
    apply(c, doc)
    ready(c, "taskagent", "word-count")
    r = through_kube(c, "word-count", {"text": "one two three"})
    assert r.status_code == 200, r.text
    assert r.json()["word_count"] == 3
    assert invocation(c, r.headers["x-clrk-invocation"])["status"]["worker"] in NAMES
    r = through_ingress("word-count", b'{"text": "four five"}')
    assert r.status_code == 200, r.text
    assert r.json()["word_count"] == 2
    # Read back through kube-apiserver by the CLI.
    logs = clrk("agents", "logs", "word-count", kubeconfig=c.admin).stdout
    assert '"word_count": 3' in logs and '"word_count": 2' in logs, logs
    traces = clrk("agents", "traces", "word-count", kubeconfig=c.admin).stdout
    assert traces.count("Succeeded") >= 2, traces


def test_echo_bot_calls_anthropic_with_the_key_injected(
        clrk_on_kube: ClrkOnKube, pods: list[WorkerPod], registry: Registry,
        fake: FakeProviders, tmp_path: Path) -> None:
    c = clrk_on_kube
    fake.replies["claude-haiku-4-5"] = "Hello from the cluster."
    (tmp_path / "ca.crt").write_bytes(fake.ca.cert_pem)
    c.cluster.kubectl("create", "secret", "generic", "provider-ca", "-n", NS,
                      f"--from-file=ca.crt={tmp_path / 'ca.crt'}")
    c.cluster.kubectl("create", "secret", "generic", "anthropic-credentials", "-n", NS,
                      f"--from-literal=api-key={KEY}")
    docs = []
    for path in sorted((EXAMPLES / "echo-bot" / "manifests").glob("*.yaml")):
        docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    for doc in docs:
        doc["metadata"]["namespace"] = NS
        if doc["kind"] == "DaemonAgent":
            doc["spec"]["template"]["spec"]["image"] = f"{registry.host}/test/echo-bot:0.1"
        if doc["kind"] == "EgressGateway":
            doc["spec"].pop("otlp", None)  # no collector out there; the store has them
            doc["spec"]["upstreamTLS"] = {
                "hostAliases": [{"hostname": "api.anthropic.com",
                                 "address": f"127.0.0.1:{fake.port}"}],
                "additionalTrustBundleSecretRef": {"name": "provider-ca", "key": "ca.crt"}}
    apply(c, *docs)
    try:
        out = until(lambda: (lambda t: t if "Hello from the cluster." in t else "")(
            clrk("agents", "logs", "echo-bot", kubeconfig=c.admin).stdout),
            "echo-bot never printed an answer", timeout=180)
        assert any(line.startswith("200 ") for line in out.splitlines()), out
        calls = [s for s in fake.seen if (s.json() or {}).get("messages") == [
            {"role": "user", "content": "Say hello."}]]
        assert calls and {s.headers["x-api-key"] for s in calls} == {KEY}

        def answered_spans() -> list[dict[str, Any]]:
            raw = c.cluster.kubectl("get", "--raw", f"{API}/namespaces/{NS}/daemonagents/"
                                    "echo-bot/traces").stdout
            return [s for s in json.loads(raw)["items"]
                    if s["attributes"].get("http.response.status_code") == "200"]

        spans = until(answered_spans, "no span of an answered call")
        request = next(e for e in spans[0]["events"] if e["name"] == "http.request")
        assert request["attributes"]["http.request.header.x-api-key"] == "[redacted]"
        # The key is nowhere the agent, the store or a log can show it.
        traces = clrk("agents", "traces", "echo-bot", kubeconfig=c.admin).stdout
        raw = c.cluster.kubectl("get", "--raw",
                                f"{API}/namespaces/{NS}/daemonagents/echo-bot/traces").stdout
        for text in (out, traces, raw, *(w.log_text() for w in pods),
                     c.manager.log_text()):
            assert KEY not in text
    finally:
        c.cluster.kubectl("delete", "daemonagent", "echo-bot", "-n", NS, check=False)


async def _invoke_all(agent: str, n: int) -> list[httpx.Response]:
    async with httpx.AsyncClient(timeout=300) as client:
        return list(await asyncio.gather(*(client.post(f"{INGRESS}/", content=b"{}", headers={
            "X-Clrk-TaskAgent": f"{NS}/{agent}", "content-type": "application/json"})
            for _ in range(n))))


def test_forty_invocations_spread_over_both_workers(clrk_on_kube: ClrkOnKube,
                                                    pods: list[WorkerPod],
                                                    registry: Registry) -> None:
    c = clrk_on_kube
    apply(c, task_agent("spread", f"{registry.host}/test/shell:1", "sleep 3; echo ok"))
    ready(c, "taskagent", "spread")
    # Every worker of the pool pulls a new revision's image; the scheduler prefers one
    # that has it, so the burst waits until both say so in their heartbeats.
    revision = get(c.cluster, "taskagent", "spread", "-n", NS)["status"][
        "latestReadyRevisionName"]
    digest = until(lambda: (get(c.cluster, "agentsandboxrevision", revision, "-n", NS)
                            .get("status") or {}).get("imageDigest"), "no image digest")
    until(lambda: all(digest in httpx.get(f"{w.url}/healthz", timeout=10).json()[
        "cachedImages"] for w in pods), "a worker never pulled the image")
    time.sleep(2 * HEARTBEAT_SECONDS)  # the next heartbeats carry it to the scheduler
    replies = asyncio.run(_invoke_all("spread", 40))
    assert [r.status_code for r in replies] == [200] * 40, [r.text for r in replies]
    assert {r.text for r in replies} == {"ok\n"}
    workers = Counter(invocation(c, r.headers["x-clrk-invocation"])["status"]["worker"]
                      for r in replies)
    print(f"40 invocations over the workers: {dict(workers)}")
    assert set(workers) == set(NAMES) and min(workers.values()) >= 10, workers


def test_a_dispatch_refused_before_the_agent_starts_goes_to_another_worker(
        clrk_on_kube: ClrkOnKube, pods: list[WorkerPod], registry: Registry) -> None:
    """A worker that heartbeats but whose dispatch port is gone (its process just
    died), idle and with the image: the scheduler picks it first, then the next."""
    c = clrk_on_kube
    apply(c, task_agent("retried", f"{registry.host}/test/shell:1", "echo retried"))
    ready(c, "taskagent", "retried")
    revision = get(c.cluster, "taskagent", "retried", "-n", NS)["status"][
        "latestReadyRevisionName"]
    # Idle, the image cached and a warm sandbox for the revision: first in line.
    ghost = {"name": "default-workers-ghost", "url": f"http://127.0.0.1:{free_port()}",
             "capacity": 64, "inFlight": 0, "draining": False, "warmRevisions": [revision],
             "warmSandboxes": 1, "dispatchToken": "ghost"}
    beat = f"{c.cluster.url}{API}/namespaces/{NS}/workerpools/default/heartbeat"
    with httpx.Client(verify=ssl.create_default_context(cafile=str(c.cluster.ca_file)),
                      headers={"Authorization": f"Bearer {c.cluster.admin_token}"}) as http:
        for _ in range(3):
            assert http.post(beat, json=ghost, timeout=30).status_code == 200
            r = through_ingress("retried")
            assert r.status_code == 200 and r.text == "retried\n", r.text
            assert invocation(c, r.headers["x-clrk-invocation"])["status"]["worker"] in NAMES


def test_a_worker_being_deleted_drains(clrk_on_kube: ClrkOnKube, pods: list[WorkerPod],
                                       registry: Registry) -> None:
    """SIGTERM (the pod deleted): what runs there finishes, new work goes elsewhere, and
    the worker exits once idle."""
    c = clrk_on_kube
    shell = f"{registry.host}/test/shell:1"
    apply(c, task_agent("draining", shell, "sleep 8; echo finished"),
          task_agent("elsewhere", shell, "echo elsewhere"))
    ready(c, "taskagent", "draining")
    ready(c, "taskagent", "elsewhere")
    leaving, staying = pods

    def running_on() -> set[str]:
        items = get(c.cluster, "invocations", "-n", NS, "-l",
                    "clrk.apoxy.dev/agent=draining")["items"]
        return {i["status"].get("worker") for i in items
                if i["status"].get("phase") == "Running"}

    async def scenario() -> tuple[list[httpx.Response], list[httpx.Response]]:
        calls = asyncio.ensure_future(_invoke_all("draining", 4))
        while leaving.name not in running_on():
            assert not calls.done(), [r.text for r in calls.result()]
            await asyncio.sleep(0.3)
        leaving.proc.terminate()
        later = []
        for _ in range(4):
            later.append(await asyncio.to_thread(through_ingress, "elsewhere"))
        return await calls, later

    try:
        first, later = asyncio.run(scenario())
        assert [r.status_code for r in first] == [200] * 4, [r.text for r in first]
        assert {r.text for r in first} == {"finished\n"}
        for r in later:
            assert r.status_code == 200, r.text
            assert invocation(c, r.headers["x-clrk-invocation"])["status"]["worker"] == \
                staying.name
        assert leaving.proc.wait(timeout=60) == 0, leaving.log_text()[-2000:]
        assert "draining" in leaving.log_text().lower()
    finally:
        if leaving.proc.poll() is not None:  # a new pod in its place
            leaving.restart()
            until(lambda: ready_workers(c.cluster) == 2, "the replaced worker never came")


def test_a_silent_worker_fails_its_executions_in_bounded_time(
        clrk_on_kube: ClrkOnKube, pods: list[WorkerPod], registry: Registry) -> None:
    """A worker that stops answering without closing its connections (a node lost):
    its running execution fails WorkerLost once it has been silent for ALIVE_TIMEOUT,
    not when the agent's own timeout would have ended it."""
    c = clrk_on_kube
    apply(c, task_agent("silenced", f"{registry.host}/test/shell:1", "sleep 100",
                        timeout="300s"))
    ready(c, "taskagent", "silenced")
    frozen = pods[1]

    async def scenario() -> httpx.Response:
        async with httpx.AsyncClient(timeout=300) as client:
            calls = [asyncio.ensure_future(client.post(f"{INGRESS}/", content=b"{}", headers={
                "X-Clrk-TaskAgent": f"{NS}/silenced", "content-type": "application/json"}))
                for _ in range(2)]
            deadline = time.monotonic() + 120
            while True:
                items = get(c.cluster, "invocations", "-n", NS, "-l",
                            "clrk.apoxy.dev/agent=silenced")["items"]
                if any(i["status"].get("worker") == frozen.name
                       and i["status"].get("phase") == "Running" for i in items):
                    break
                assert time.monotonic() < deadline, items
                await asyncio.sleep(0.3)
            frozen.proc.send_signal(signal.SIGSTOP)
            try:
                # The other call sleeps on: the frozen worker's is the one that ends.
                done, pending = await asyncio.wait(calls, return_when=asyncio.FIRST_COMPLETED)
            finally:
                frozen.proc.send_signal(signal.SIGCONT)
            for call in pending:
                call.cancel()  # the caller goes away: its execution is cancelled
            await asyncio.gather(*pending, return_exceptions=True)
            return done.pop().result()

    start = time.monotonic()
    r = asyncio.run(scenario())
    status = invocation(c, r.headers["x-clrk-invocation"])["status"]
    assert status["phase"] == "Failed" and status["reason"].startswith("WorkerLost"), status
    print(f"the silent worker's execution failed {time.monotonic() - start:.1f} s after "
          f"it was invoked (ALIVE_TIMEOUT {ALIVE_TIMEOUT} s)")
    c.cluster.kubectl("delete", "taskagent", "silenced", "-n", NS)


def test_a_killed_worker_fails_its_own_executions_and_loses_its_daemon(
        clrk_on_kube: ClrkOnKube, pods: list[WorkerPod], registry: Registry) -> None:
    c = clrk_on_kube
    shell = f"{registry.host}/test/shell:1"
    daemon = {"apiVersion": "clrk.apoxy.dev/v1alpha1", "kind": "DaemonAgent",
              "metadata": {"name": "keeper", "namespace": NS},
              "spec": {"workerPoolRef": "default", "template": {"spec": {
                  "image": shell, "command": ["/bin/sh", "-c", "echo up; sleep 600"]}}}}
    apply(c, daemon, task_agent("long", shell, "sleep 20; echo done"),
          task_agent("quick", shell, "echo quick"))
    ready(c, "taskagent", "long")
    ready(c, "taskagent", "quick")
    home = until(lambda: ((get(c.cluster, "daemonagent", "keeper", "-n", NS) or {})
                          .get("status") or {}).get("worker"), "keeper was never placed")
    victim = next(w for w in pods if w.name == home)
    survivor = next(w for w in pods if w.name != home)

    def running_on() -> set[str]:
        items = get(c.cluster, "invocations", "-n", NS, "-l",
                    "clrk.apoxy.dev/agent=long")["items"]
        return {i["status"].get("worker") for i in items
                if i["status"].get("phase") == "Running"}

    def home_of_keeper() -> str | None:
        doc = get(c.cluster, "daemonagent", "keeper", "-n", NS) or {}
        return (doc.get("status") or {}).get("worker")

    async def scenario() -> tuple[list[httpx.Response], float]:
        calls = asyncio.ensure_future(_invoke_all("long", 8))
        while running_on() != set(NAMES):
            assert not calls.done(), [r.text for r in calls.result()]
            await asyncio.sleep(0.3)
        victim.kill()
        killed = time.monotonic()
        while home_of_keeper() != survivor.name:  # the daemon moves meanwhile
            assert time.monotonic() - killed < 60, "keeper was not placed on the survivor"
            await asyncio.sleep(0.2)
        moved = time.monotonic() - killed
        return await calls, moved

    try:
        replies, moved = asyncio.run(scenario())
        print(f"keeper placed on {survivor.name} {moved:.1f} s after {victim.name} was "
              "killed")
        by_worker: dict[str, list[dict[str, Any]]] = {}
        for r in replies:
            status = invocation(c, r.headers["x-clrk-invocation"])["status"]
            by_worker.setdefault(status["worker"], []).append(status)
        assert set(by_worker) == set(NAMES), by_worker
        for status in by_worker[victim.name]:
            assert status["phase"] == "Failed", status
            assert status["reason"].startswith("WorkerLost"), status
        for status in by_worker[survivor.name]:
            assert status["phase"] == "Succeeded", status
        # New work goes to the worker that is left.
        r = through_ingress("quick")
        assert r.status_code == 200 and r.text == "quick\n", r.text
        assert invocation(c, r.headers["x-clrk-invocation"])["status"]["worker"] == \
            survivor.name
        # The daemon was placed on the survivor (within 10 s by design: the worker is
        # stale after STALE_AFTER, and placements are looked at every
        # DAEMON_RECHECK_SECONDS; tests/unit/test_scheduler_registry.py holds the sum),
        # and runs there.
        until(lambda: "up" in clrk("agents", "logs", "keeper",
                                   kubeconfig=c.admin).stdout.split(),
              "keeper never ran on the surviving worker")
    finally:
        c.cluster.kubectl("delete", "daemonagent", "keeper", "-n", NS, check=False)
