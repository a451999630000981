"""Invoking TaskAgents through the ingress and the API, with real workers and sandboxes."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import DevServer, start_dev
from tests.images import Registry, build, busybox_recipe, word_count_image

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def dev(registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevServer]:
    registry.push("test/word-count", "0.1", word_count_image())
    registry.push("test/shell", "1", build(busybox_recipe(Entrypoint=["/bin/sh", "-c"])))
    server = start_dev(tmp_path_factory.mktemp("invoke") / "clrk", "--insecure-registry",
                       registry.host, workers=1)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            ready = server.kubectl("get", "wp", "default", "-o",
                                   "jsonpath={.status.readyReplicas}", check=False).stdout
            if ready == "1":
                break
            time.sleep(0.3)
        else:
            raise AssertionError("the worker never became ready")
        yield server
    finally:
        server.stop()


def agent(dev: DevServer, name: str, image: str, args: list[str] | None = None,
          **spec: object) -> None:
    doc = {"apiVersion": "clrk.apoxy.dev/v1alpha1", "kind": "TaskAgent",
           "metadata": {"name": name},
           "spec": {"workerPoolRef": "default", "timeout": "60s", **spec,
                    "template": {"spec": {"image": image, **({"args": args} if args else {})}}}}
    dev.kubectl("apply", "-f", "-", input=json.dumps(doc))


def call(dev: DevServer, name: str, body: bytes = b'{"text":"hello world from clrk"}',
         **headers: str) -> httpx.Response:
    return httpx.post(f"{dev.ingress}/", content=body, timeout=120, headers={
        "X-Clrk-TaskAgent": f"default/{name}", "X-Clrk-Trigger": "http",
        "content-type": "application/json", **headers})


def test_word_count_through_the_ingress_and_the_api(dev: DevServer, registry: Registry) -> None:
    agent(dev, "word-count", f"{registry.host}/test/word-count:0.1")
    r = call(dev, "word-count", **{"X-Clrk-Execution-ID": "exec-123"})
    assert r.status_code == 200, r.text
    assert r.json() == {"word_count": 4, "envelope_id": "exec-123"}
    assert r.headers["x-clrk-execution-id"] == "exec-123"
    api = httpx.post(
        f"{dev.url}/apis/clrk.apoxy.dev/v1alpha1/namespaces/default/taskagents/word-count/"
        "invoke", content=b'{"text":"one two"}', timeout=120, verify=dev.ssl_context(),
        headers={"Authorization": f"Bearer {dev.token}", "content-type": "application/json",
                 "x-request-id": "req-9"})
    assert api.status_code == 200, api.text
    assert api.json() == {"word_count": 2, "envelope_id": "req-9"}


def test_exit_codes_timeouts_and_limits(dev: DevServer, registry: Registry) -> None:
    image = f"{registry.host}/test/shell:1"
    agent(dev, "fails", image, ["echo partial; exit 3"])
    r = call(dev, "fails")
    assert r.status_code == 500 and r.headers["x-clrk-exit-code"] == "3"
    assert r.text == "partial\n"
    agent(dev, "sleeper", image, ["sleep 30"], timeout="1s")
    r = call(dev, "sleeper")
    assert r.status_code == 504
    r = call(dev, "fails", body=b"x" * (33 * 1024 * 1024))
    assert r.status_code == 413
    r = call(dev, "nobody")
    assert r.status_code == 404


async def test_max_concurrent(dev: DevServer, registry: Registry) -> None:
    agent(dev, "single", f"{registry.host}/test/shell:1", ["sleep 2; echo done"],
          maxConcurrent=1)
    async with httpx.AsyncClient(timeout=120) as client:
        async def one() -> httpx.Response:
            return await client.post(f"{dev.ingress}/", content=b"{}", headers={
                "X-Clrk-TaskAgent": "default/single", "content-type": "application/json"})

        first = asyncio.create_task(one())
        await asyncio.sleep(0.5)
        second = await one()
        done = await first
    assert sorted([first.result().status_code, second.status_code]) == [200, 429]
    rejected = second if second.status_code == 429 else done
    assert rejected.headers["retry-after"]


def test_worker_dir_is_clean_after_runs(dev: DevServer) -> None:
    state = Path(dev.data_dir) / "workers" / "worker-0" / "sandboxes" / "bundles"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and list(state.iterdir()):
        time.sleep(0.2)
    assert list(state.iterdir()) == []


def test_run_task_exit_codes(dev: DevServer, registry: Registry, tmp_path: Path) -> None:
    agent(dev, "word-count", f"{registry.host}/test/word-count:0.1")
    r = dev.clrk("agents", "run-task", "word-count", "-i", '{"text": "a b c"}',
                 "-H", "X-Clrk-Execution-ID=cli-1")
    assert json.loads(r.stdout) == {"word_count": 3, "envelope_id": "cli-1"}
    f = tmp_path / "in.json"
    f.write_text('{"text": "from a file"}')
    r = dev.clrk("agents", "run-task", "word-count", "-i", f"@{f}")
    assert json.loads(r.stdout)["word_count"] == 3
    r = dev.clrk("agents", "run-task", "word-count", "-i", "-", input='{"text": "x"}')
    assert json.loads(r.stdout)["word_count"] == 1
    agent(dev, "fails", f"{registry.host}/test/shell:1", ["echo partial; exit 3"])
    r = dev.clrk("agents", "run-task", "fails", check=False)
    assert r.returncode == 1 and r.stdout == "partial\n" and "exit code 3" in r.stderr
    agent(dev, "sleeper", f"{registry.host}/test/shell:1", ["sleep 30"], timeout="1s")
    assert dev.clrk("agents", "run-task", "sleeper", check=False).returncode == 124
    r = dev.clrk("agents", "run-task", "nobody", check=False)
    assert r.returncode == 1 and "not found" in r.stderr and "Traceback" not in r.stderr


async def test_run_task_rejected_is_77(dev: DevServer, registry: Registry) -> None:
    agent(dev, "single", f"{registry.host}/test/shell:1", ["sleep 2; echo done"],
          maxConcurrent=1)
    async with httpx.AsyncClient(timeout=120) as client:
        first = asyncio.create_task(client.post(f"{dev.ingress}/", content=b"{}", headers={
            "X-Clrk-TaskAgent": "default/single", "content-type": "application/json"}))
        await asyncio.sleep(0.5)
        r = await asyncio.to_thread(dev.clrk, "agents", "run-task", "single", check=False)
        await first
    assert r.returncode == 77 and "maxConcurrent" in r.stderr


def test_cron_fires_with_schedule_input(dev: DevServer, registry: Registry) -> None:
    # The agent succeeds only if the envelope carries scheduleInput as .data and subject cron.
    script = ("read -r e; case \"$e\" in *'\"subject\":\"cron\"'*'\"data\":{\"n\":1}'*) "
              "exit 0;; *) exit 9;; esac")
    agent(dev, "ticker", f"{registry.host}/test/shell:1", [script], schedule="@every 2s",
          scheduleInput={"n": 1})

    def fires() -> list[str]:
        out = dev.kubectl("get", "events", "--field-selector",
                          "involvedObject.name=ticker", "-o",
                          "jsonpath={range .items[*]}{.reason}:{.message}{'\\n'}{end}").stdout
        return [line for line in out.splitlines() if line.startswith("Cron")]

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(fires()) < 2:
        time.sleep(0.5)
    got = fires()
    assert len(got) >= 2 and all(f.startswith("CronFired:") for f in got), got
    status = json.loads(dev.kubectl("get", "ta", "ticker", "-o", "json").stdout)["status"]
    assert status["lastScheduleTime"] and status["nextScheduleTime"]
    assert status["nextScheduleTime"] > status["lastScheduleTime"]
    assert {c["type"]: c["status"] for c in status["conditions"]}["Scheduled"] == "True"
    fire_times = [f.split("fire at ")[1].split(":")[0:3] for f in got]
    assert len({tuple(t) for t in fire_times}) == len(fire_times)  # never fired twice
    dev.kubectl("delete", "ta", "ticker")


def daemon(dev: DevServer, name: str, image: str, script: str, **spec: object) -> None:
    doc = {"apiVersion": "clrk.apoxy.dev/v1alpha1", "kind": "DaemonAgent",
           "metadata": {"name": name},
           "spec": {**spec, "template": {"spec": {"image": image, "args": [script]}}}}
    dev.kubectl("apply", "-f", "-", input=json.dumps(doc))


def daemon_status(dev: DevServer, name: str) -> dict[str, object]:
    obj = json.loads(dev.kubectl("get", "da", name, "-o", "json").stdout)
    return dict(obj.get("status") or {})


def wait_status(dev: DevServer, name: str, pred: object, timeout: float = 60) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    while True:
        st = daemon_status(dev, name)
        if pred(st) or time.monotonic() > deadline:  # type: ignore[operator]
            return st
        time.sleep(0.3)


def test_daemon_crash_loop_never_and_recycle(dev: DevServer, registry: Registry) -> None:
    image = f"{registry.host}/test/shell:1"
    daemon(dev, "crasher", image, "echo crash; exit 1")
    st = wait_status(dev, "crasher", lambda s: int(s.get("restartCount") or 0) >= 3)
    assert int(st["restartCount"]) >= 3, st  # type: ignore[call-overload]
    assert st["phase"] == "CrashLoopBackOff" and st["worker"] == "worker-0"
    assert st["lastExitCode"] == 1

    daemon(dev, "once", image, "exit 0", restartPolicy="Never")
    st = wait_status(dev, "once", lambda s: s.get("phase") == "Completed")
    assert st["phase"] == "Completed" and not st.get("restartCount")

    daemon(dev, "recycled", image, "sleep 100", maxLifetimeSeconds=2)
    first = wait_status(dev, "recycled", lambda s: s.get("phase") == "Running")["upSince"]
    st = wait_status(dev, "recycled", lambda s: s.get("upSince") not in (None, first))
    assert st["upSince"] != first and st["phase"] == "Running"

    for name in ("crasher", "once", "recycled"):
        dev.kubectl("delete", "da", name)
    bundles = Path(dev.data_dir) / "workers" / "worker-0" / "sandboxes" / "bundles"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and list(bundles.iterdir()):
        time.sleep(0.3)
    assert list(bundles.iterdir()) == []


METADATA_AGENT = """
wget -q -O /tmp/event "$CLRK_METADATA_URL/event" || exit 11
grep -q '"subject":"http"' /tmp/event || exit 12
wget -q -O /dev/null --post-data "reply:$(wc -c < /tmp/event)" "$CLRK_METADATA_URL/response" \
  || exit 13
if wget -q -O /dev/null --post-data again "$CLRK_METADATA_URL/response" 2>/dev/null; then
  exit 14
fi
echo this-stdout-is-not-the-body
"""


def test_metadata_delivery(dev: DevServer, registry: Registry) -> None:
    agent(dev, "meta", f"{registry.host}/test/shell:1", [METADATA_AGENT],
          delivery={"mode": "Metadata"})
    r = call(dev, "meta")
    assert r.status_code == 200, (r.status_code, r.headers.get("x-clrk-exit-code"), r.text)
    assert r.text.startswith("reply:") and int(r.text.split(":")[1]) > 100


ISOLATION_AGENT = """
base=${{CLRK_METADATA_URL#http://}}; base=${{base%/v1}}; host=${{base%:*}}; mport=${{base#*:}}
probe() {{
  if timeout 3 nc "$1" "$2" </dev/null >/dev/null 2>&1; then echo "reached $1:$2"
  else echo "blocked $1:$2"; fi
}}
probe 127.0.0.1 {port}
probe "$host" {port}
probe "$host" {api}
probe "$host" "$mport"
exit 0
"""


def test_sandbox_reaches_only_the_metadata_service(dev: DevServer, registry: Registry) -> None:
    import http.server
    import socket
    import threading

    server = http.server.ThreadingHTTPServer(("0.0.0.0", 0), http.server.SimpleHTTPRequestHandler)
    port = server.server_address[1]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    api_port = dev.url.rsplit(":", 1)[1]
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            pass  # the host itself can reach it
        agent(dev, "prober", f"{registry.host}/test/shell:1",
              [ISOLATION_AGENT.format(port=port, api=api_port)])
        r = call(dev, "prober")
        assert r.status_code == 200, (r.status_code, r.headers.get("x-clrk-reason"), r.text)
        lines = r.text.split()
        # The host's loopback, other host ports and the API server are dropped; only the
        # worker's metadata service answers (the positive control for the probe itself).
        assert [w for w in lines if w in ("reached", "blocked")] == [
            "blocked", "blocked", "blocked", "reached"], r.text
    finally:
        server.shutdown()


async def test_worker_killed_mid_execution(dev: DevServer, registry: Registry) -> None:
    import os
    import signal
    import subprocess

    agent(dev, "long", f"{registry.host}/test/shell:1", ["sleep 30"])
    agent(dev, "quick", f"{registry.host}/test/shell:1", ["echo up"])
    wdir = Path(dev.data_dir) / "workers" / "worker-0"
    bundles = wdir / "sandboxes" / "bundles"
    async with httpx.AsyncClient(timeout=120) as client:
        pending = asyncio.create_task(client.post(f"{dev.ingress}/", content=b"{}", headers={
            "X-Clrk-TaskAgent": "default/long", "content-type": "application/json"}))
        for _ in range(200):
            if list(bundles.iterdir()):
                break
            await asyncio.sleep(0.1)
        assert list(bundles.iterdir()), "the execution never started"
        old_pid = int((wdir / "worker.pid").read_text())
        os.kill(old_pid, signal.SIGKILL)
        r = await pending
    assert r.status_code >= 500  # failed with a reason, not hung
    assert "without a result" in r.headers.get("x-clrk-reason", "") or r.status_code == 502
    # clrk dev restarts the worker; it sweeps what the dead one left before it serves.
    for _ in range(100):
        if call(dev, "quick").status_code == 200:
            break
        await asyncio.sleep(0.3)
    else:
        raise AssertionError("the restarted worker never served")
    assert int((wdir / "worker.pid").read_text()) != old_pid
    for _ in range(100):  # the quick execution's own cleanup runs in the background
        if not list(bundles.iterdir()):
            break
        await asyncio.sleep(0.1)
    assert list(bundles.iterdir()) == []
    for _ in range(100):
        netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        if "clrk-0-" not in netns:
            break
        await asyncio.sleep(0.1)
    assert "clrk-0-" not in netns
    runsc = subprocess.run(["runsc", "--root", str(wdir / "sandboxes" / "runsc"), "list",
                            "--quiet"], capture_output=True, text=True).stdout
    assert runsc.strip() == ""


def test_images_are_pulled_when_a_revision_appears(dev: DevServer, registry: Registry) -> None:
    agent(dev, "prepulled", f"{registry.host}/test/word-count:0.1")
    agent(dev, "missing-image", f"{registry.host}/test/no-such-image:1")

    def revision(name: str) -> dict[str, object]:
        return dict(json.loads(dev.kubectl("get", "asr", f"{name}-00001", "-o", "json",
                                           check=False).stdout or "{}").get("status") or {})

    def ready(name: str) -> dict[str, object]:
        conds = revision(name).get("conditions") or []
        return next((c for c in conds if c["type"] == "Ready"), {})  # type: ignore[union-attr]

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (ready("prepulled") and ready("missing-image")):
        time.sleep(0.3)
    assert ready("prepulled")["status"] == "True"
    assert str(revision("prepulled")["imageDigest"]).startswith("sha256:")
    bad = ready("missing-image")
    assert bad["status"] == "False" and bad["reason"] == "ImagePullFailed"
    assert "not found" in str(bad["message"])
    deadline = time.monotonic() + 30
    latest = ""
    while time.monotonic() < deadline and not latest:
        latest = dev.kubectl("get", "ta", "prepulled", "-o",
                             "jsonpath={.status.latestReadyRevisionName}").stdout
        time.sleep(0.3)
    assert latest == "prepulled-00001"


async def test_pool_max_executions_caps_the_worker(dev: DevServer, registry: Registry) -> None:
    agent(dev, "napper", f"{registry.host}/test/shell:1", ["sleep 3; echo rested"])
    dev.kubectl("patch", "wp", "default", "--type=merge",
                "-p", '{"spec":{"maxExecutionsPerWorker":1}}')
    try:
        await _pool_capacity(dev, "1")
        async with httpx.AsyncClient(timeout=120) as client:
            def one() -> Any:
                return client.post(f"{dev.ingress}/", content=b"{}", headers={
                    "X-Clrk-TaskAgent": "default/napper", "content-type": "application/json"})

            first = asyncio.create_task(one())
            await asyncio.sleep(1)
            second = await one()
            done = await first
        assert sorted([done.status_code, second.status_code]) == [200, 429]
        shed = second if second.status_code == 429 else done
        assert "capacity" in shed.json()["message"]
    finally:
        dev.kubectl("patch", "wp", "default", "--type=merge",
                    "-p", '{"spec":{"maxExecutionsPerWorker":32}}')
        await _pool_capacity(dev, "32")


async def _pool_capacity(dev: DevServer, want: str) -> None:
    """The worker follows its pool's setting and reports it; wait until it has."""
    for _ in range(200):
        if dev.kubectl("get", "wp", "default", "-o",
                       "jsonpath={.status.capacity}").stdout == want:
            return
        await asyncio.sleep(0.3)
    raise AssertionError(f"pool capacity never became {want}")
