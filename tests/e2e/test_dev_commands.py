"""`clrk dev status --json|logs|wait-ready|reload` against a running `clrk dev` with a
worker, from another process as a user's second terminal would."""

from __future__ import annotations

import json
import queue
import re
import subprocess
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import CLRK, DevServer, start_dev
from tests.e2e.test_invoke import agent, call
from tests.fake_providers import OTLPCapture
from tests.images import Registry, build, busybox_recipe

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def collector() -> Iterator[OTLPCapture]:
    capture = OTLPCapture()
    try:
        yield capture
    finally:
        capture.stop()


@pytest.fixture(scope="module")
def dev(registry: Registry, collector: OTLPCapture,
        tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevServer]:
    registry.push("test/shell", "1", build(busybox_recipe(Entrypoint=["/bin/sh", "-c"])))
    server = start_dev(tmp_path_factory.mktemp("devcmd") / "clrk", "--insecure-registry",
                       registry.host, "--otlp-forward", collector.url, workers=1)
    try:
        yield server
    finally:
        server.stop()


def devcmd(dev: DevServer, *args: str, timeout: float = 180
           ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CLRK, "dev", *args, "--data-dir", str(dev.data_dir)],
                          capture_output=True, text=True, timeout=timeout)


def components(dev: DevServer) -> dict[str, dict[str, Any]]:
    r = devcmd(dev, "status", "--json")
    assert r.returncode == 0, r.stderr
    return {c["name"]: c for c in json.loads(r.stdout)["components"]}


def wait_ready(dev: DevServer) -> None:
    r = devcmd(dev, "wait-ready", "--timeout", "120")
    assert r.returncode == 0 and "clrk dev is ready" in r.stdout, (r.stdout, r.stderr)


def test_status_wait_ready_and_logs(dev: DevServer) -> None:
    wait_ready(dev)
    found = components(dev)
    assert set(found) == {"api-server", "ingress", "controller-manager", "otlp-receiver",
                          "registry", "worker-0", "worker-0/envoy"}, found
    assert all(c["ready"] and c["state"] == "running" for c in found.values()), found
    assert found["api-server"]["address"] == dev.url
    assert found["worker-0"]["pid"] != found["worker-0/envoy"]["pid"]
    assert found["worker-0/envoy"]["address"].endswith("(admin)")
    table = devcmd(dev, "status").stdout
    assert "COMPONENT" in table and "worker-0/envoy" in table
    logs = devcmd(dev, "logs", "--tail", "5").stdout.splitlines()
    prefixes = {line.split("]")[0] + "]" for line in logs}
    assert {"[api-server]", "[controller-manager]", "[worker-0]"} <= prefixes, prefixes
    assert len([x for x in logs if x.startswith("[worker-0] ")]) <= 5
    # -f keeps printing: once it shows the last lines, a later one arrives.
    follow = subprocess.Popen([CLRK, "dev", "logs", "-f", "--tail", "1", "--data-dir",
                               str(dev.data_dir)], stdout=subprocess.PIPE, text=True)
    lines: queue.Queue[str] = queue.Queue()

    def read() -> None:
        for x in follow.stdout or []:
            lines.put(x)

    threading.Thread(target=read, daemon=True).start()
    try:
        assert lines.get(timeout=60).startswith("[")  # it runs and has read the files
        assert devcmd(dev, "reload", "controller-manager").returncode == 0
        deadline = time.monotonic() + 60
        while "controllers restarted" not in (line := lines.get(timeout=60)):
            assert time.monotonic() < deadline, line
        assert line.startswith("[api-server] ")
    finally:
        follow.terminate()
        follow.wait(timeout=10)


def test_wait_ready_says_what_is_not_ready(dev: DevServer, tmp_path: Any) -> None:
    r = subprocess.run([CLRK, "dev", "wait-ready", "--timeout", "1", "--data-dir",
                        str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and len(r.stderr.splitlines()) == 1, r.stderr
    assert "not ready after 1s" in r.stderr and str(tmp_path) in r.stderr


def test_reload_keeps_objects_and_invocations(dev: DevServer, registry: Registry) -> None:
    wait_ready(dev)
    agent(dev, "reloaded", f"{registry.host}/test/shell:1", ["echo before"])
    r = call(dev, "reloaded")
    assert r.status_code == 200 and r.text.strip() == "before", r.text
    invocations = dev.kubectl("get", "inv", "-o", "name").stdout.split()
    assert invocations
    pid = components(dev)["worker-0"]["pid"]
    r2 = devcmd(dev, "reload", "worker-0")
    assert r2.returncode == 0 and "worker-0 reloaded" in r2.stdout, r2.stderr
    wait_ready(dev)
    after = components(dev)["worker-0"]
    assert after["pid"] != pid and after["restarts"] == 1
    assert dev.kubectl("get", "inv", "-o", "name").stdout.split() == invocations
    assert call(dev, "reloaded").text.strip() == "before"  # the worker serves again
    # The controllers come back too: a new agent gets its revision.
    assert devcmd(dev, "reload", "controller-manager").returncode == 0
    agent(dev, "after-reload", f"{registry.host}/test/shell:1", ["echo after"])
    deadline = time.monotonic() + 60
    while "after-reload-00001" not in dev.kubectl("get", "asr", "-o", "name").stdout:
        assert time.monotonic() < deadline, "no revision after the controllers' reload"
        time.sleep(0.3)
    bad = devcmd(dev, "reload", "worker-7")
    assert bad.returncode == 1 and "there is no worker-7 (workers: worker-0)" in bad.stderr


def test_every_record_is_teed_to_the_receiver_and_forwarded(
        dev: DevServer, registry: Registry, collector: OTLPCapture) -> None:
    """The invocation's span and its output line reach `clrk dev`'s OTLP receiver (its
    tail, what the TUI reads) and, through --otlp-forward, another collector."""
    wait_ready(dev)
    agent(dev, "teed", f"{registry.host}/test/shell:1", ["echo teed-line"])
    assert call(dev, "teed").text.strip() == "teed-line"
    receiver = components(dev)["otlp-receiver"]["address"]
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+", receiver), receiver
    seen: dict[str, dict[str, Any]] = {}
    with httpx.stream("GET", f"{receiver}/v1/tail", timeout=60) as tail:
        lines = tail.iter_lines()
        assert "receiver" in json.loads(next(lines))
        for line in lines:
            record = json.loads(line)["record"]
            if record["signal"] == "span" and record["name"] == "invoke teed":
                seen["span"] = record
            if record["signal"] == "log" and record["body"] == "teed-line":
                seen["log"] = record
            if len(seen) == 2:
                break
    assert seen["span"]["attributes"]["clrk.agent.name"] == "teed"
    assert seen["log"]["traceId"] == seen["span"]["traceId"]
    deadline = time.monotonic() + 60
    while not any(s["name"] == "invoke teed" for s in collector.spans()):
        assert time.monotonic() < deadline, "nothing forwarded to --otlp-forward"
        time.sleep(0.3)
    # Anything that speaks OTLP may send to the receiver; a bad body is told why.
    bad = httpx.post(f"{receiver}/v1/traces", content=b"{", timeout=10,
                     headers={"content-type": "application/json"})
    assert bad.status_code == 400 and "JSON" in bad.text
    assert httpx.post(f"{receiver}/v1/logs", content=b"x", timeout=10,
                      headers={"content-type": "text/plain"}).status_code == 415


def test_a_worker_takes_executions_only_from_the_scheduler(dev: DevServer) -> None:
    """Dispatch needs the token the worker told the API server in its heartbeats: a
    process on the same host (or the pod network) cannot hand it an execution."""
    wait_ready(dev)
    log = (dev.data_dir / "workers" / "worker-0" / "worker.log").read_text()
    url = re.findall(r"worker worker-0 serving on (http://\S+) for pool", log)[-1]
    body: dict[str, Any] = {"agent": {}, "template": {}, "event": {}}
    for headers in ({}, {"Authorization": "Bearer not-the-token"}):
        r = httpx.post(f"{url}/v1/executions", json=body, headers=headers, timeout=10)
        assert r.status_code == 401 and "token" in r.json()["message"], r.text
    assert call(dev, "teed").status_code == 200  # the scheduler's dispatches still go
