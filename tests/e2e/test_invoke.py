"""Invoking TaskAgents through the ingress and the API, with real workers and sandboxes."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.auth_registry import AuthRegistry
from tests.conftest import DevServer, start_dev
from tests.images import (
    Layer,
    Recipe,
    Registry,
    build,
    busybox_recipe,
    with_layer,
    word_count_image,
)

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def private(registry: Registry) -> Iterator[AuthRegistry]:
    front = AuthRegistry(registry.host)
    yield front
    front.stop()


@pytest.fixture(scope="module")
def dev(registry: Registry, private: AuthRegistry,
        tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevServer]:
    registry.push("test/word-count", "0.1", word_count_image())
    registry.push("test/shell", "1", build(busybox_recipe(Entrypoint=["/bin/sh", "-c"])))
    server = start_dev(tmp_path_factory.mktemp("invoke") / "clrk", "--insecure-registry",
                       registry.host, "--insecure-registry", private.host, workers=1)
    try:
        server.wait_for_worker()
        yield server
    finally:
        server.stop()


def agent(dev: DevServer, name: str, image: str, args: list[str] | None = None,
          env: dict[str, str] | None = None, command: list[str] | None = None,
          **spec: object) -> None:
    template: dict[str, object] = {"image": image}
    if command:
        template["command"] = command
    if args:
        template["args"] = args
    if env:
        template["env"] = [{"name": k, "value": v} for k, v in env.items()]
    doc = {"apiVersion": "clrk.apoxy.dev/v1alpha1", "kind": "TaskAgent",
           "metadata": {"name": name},
           "spec": {"workerPoolRef": "default", "timeout": "60s", **spec,
                    "template": {"spec": template}}}
    dev.kubectl("apply", "-f", "-", input=json.dumps(doc))


def call(dev: DevServer, name: str, body: bytes = b'{"text":"hello world from clrk"}',
         headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.post(f"{dev.ingress}/", content=body, timeout=120, headers={
        "X-Clrk-TaskAgent": f"default/{name}", "X-Clrk-Trigger": "http",
        "content-type": "application/json", **(headers or {})})


def test_word_count_through_the_ingress_and_the_api(dev: DevServer, registry: Registry) -> None:
    agent(dev, "word-count", f"{registry.host}/test/word-count:0.1")
    r = call(dev, "word-count", headers={"X-Clrk-Execution-ID": "exec-123"})
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


def spare_networks(wdir: Path) -> set[str]:
    """The namespaces and veths the worker made ahead for its next sandboxes (no sandbox
    has used them)."""
    path = wdir / "spare-networks"
    return set(path.read_text().split()) if path.exists() else set()


def leftovers(dev: DevServer) -> list[str]:
    """Whatever of the worker's sandboxes exists: runsc sandboxes, bundles, cgroups,
    network namespaces and veths, mounts, processes."""
    import subprocess

    wdir = Path(dev.data_dir) / "workers" / "worker-0" / "sandboxes"
    spares = spare_networks(wdir)
    found = sorted(sandboxes(dev))
    found += [f"bundle {p.name}" for p in (wdir / "bundles").iterdir()]
    found += [f"cgroup {p}" for p in Path("/sys/fs/cgroup").glob("*/clrk/clrk-*")]
    found += [f"netns {n}" for n in subprocess.run(
        ["ip", "netns", "list"], capture_output=True, text=True).stdout.split()
        if n.startswith("clrk-0-") and n not in spares]
    found += [f"link {n}" for n in subprocess.run(
        ["ip", "-o", "link"], capture_output=True, text=True).stdout.split()
        if n.startswith("clk0x") and n.split("@")[0].rstrip(":") not in spares]
    found += [f"mount {line}" for line in Path("/proc/mounts").read_text().splitlines()
              if str(wdir) in line]
    found += [f"process {line}" for line in subprocess.run(
        ["pgrep", "-af", "runsc"], capture_output=True, text=True).stdout.splitlines()
        if str(wdir) in line]
    return found


def spec_curl(dev: DevServer, execution_id: str) -> dict[str, Any]:
    """The quickstart's curl command, against the ingress, with an execution id."""
    import subprocess

    out = subprocess.run(
        ["curl", "-sS", f"{dev.ingress}/", "-H", "X-Clrk-TaskAgent: default/word-count",
         "-H", "X-Clrk-Trigger: http", "-H", "content-type: application/json",
         "-H", f"X-Clrk-Execution-ID: {execution_id}",
         "--data", '{"text":"hello world from clrk"}'],
        capture_output=True, text=True, check=True, timeout=120).stdout
    result: dict[str, Any] = json.loads(out)
    return result


def test_spec_word_count_manifest_curl_run_task_and_metadata(
        dev: DevServer, registry: Registry, tmp_path: Path) -> None:
    import yaml

    manifest = yaml.safe_load((Path(__file__).resolve().parents[2] / "examples" /
                               "word-count" / "taskagent.yaml").read_text())
    manifest["spec"]["template"]["spec"]["image"] = f"{registry.host}/test/word-count:0.1"
    path = tmp_path / "taskagent.yaml"
    path.write_text(yaml.safe_dump(manifest))
    # Start from the manifest alone (other tests apply word-count with kubectl, whose
    # fields server-side apply would rightly report as conflicts).
    dev.kubectl("delete", "ta", "word-count", "--ignore-not-found")
    dev.clrk("apply", "-f", str(path))
    assert spec_curl(dev, "spec-1") == {"word_count": 4, "envelope_id": "spec-1"}
    r = dev.clrk("agents", "run-task", "word-count", "-i", '{"text":"hello world from clrk"}',
                 "-H", "X-Clrk-Execution-ID=spec-2")
    assert json.loads(r.stdout) == {"word_count": 4, "envelope_id": "spec-2"}
    manifest["spec"]["delivery"] = {"mode": "Metadata"}
    path.write_text(yaml.safe_dump(manifest))
    dev.clrk("apply", "-f", str(path))
    assert spec_curl(dev, "spec-3") == {"word_count": 4, "envelope_id": "spec-3"}
    inv = json.loads(dev.kubectl("get", "inv", "-l", "clrk.apoxy.dev/agent=word-count", "-o",
                                 "json").stdout)["items"]
    mine = [i for i in inv if i["spec"]["executionId"] == "spec-3"]
    assert mine and mine[0]["status"]["phase"] == "Succeeded"
    manifest["spec"].pop("delivery")
    path.write_text(yaml.safe_dump(manifest))
    dev.clrk("apply", "-f", str(path))


def test_exit_codes_timeouts_and_limits(dev: DevServer, registry: Registry) -> None:
    image = f"{registry.host}/test/shell:1"
    agent(dev, "fails", image, ["echo partial; exit 3"])
    r = call(dev, "fails")
    assert r.status_code == 500 and r.headers["x-clrk-exit-code"] == "3"
    assert r.text == "partial\n"
    agent(dev, "sleeper", image, ["sleep 30"], timeout="1s")
    r = call(dev, "sleeper")
    assert r.status_code == 504
    wait_for(lambda: leftovers(dev) == [], what="the timed-out sandbox's cleanup",
             show=lambda: leftovers(dev))
    r = call(dev, "fails", body=b"x" * (33 * 1024 * 1024))
    assert r.status_code == 413
    st = invocation(dev, r.headers["x-clrk-invocation"])["status"]
    assert st["phase"] == "Rejected" and st["reason"].startswith("BodyTooLarge"), st
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
    st = invocation(dev, rejected.headers["x-clrk-invocation"])["status"]
    assert st["phase"] == "Rejected" and "maxConcurrent" in st["reason"]


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
    agent(dev, "single", f"{registry.host}/test/shell:1", ["sleep 6; echo done"],
          maxConcurrent=1)
    async with httpx.AsyncClient(timeout=120) as client:
        first = asyncio.create_task(client.post(f"{dev.ingress}/", content=b"{}", headers={
            "X-Clrk-TaskAgent": "default/single", "content-type": "application/json"}))

        def in_flight() -> bool:  # the first call admitted (not a guess at how soon)
            phases = dev.kubectl("get", "inv", "-l", "clrk.apoxy.dev/agent=single", "-o",
                                 "jsonpath={.items[*].status.phase}").stdout.split()
            return any(p in ("Pending", "Dispatched", "Running") for p in phases)

        deadline = time.monotonic() + 60
        while not await asyncio.to_thread(in_flight):
            assert time.monotonic() < deadline and not first.done(), "never in flight"
            await asyncio.sleep(0.1)
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
    # Each run is an Invocation with its own output lines.
    runs = json.loads(dev.clrk("agents", "invocations", "crasher", "-o", "json").stdout)[
        "items"]
    ended = [r for r in runs if r["status"]["phase"] == "Failed"]
    assert len(ended) >= 3 and all(r["spec"]["trigger"] == "daemon" for r in runs)
    assert ended[0]["status"]["exitCode"] == 1 and ended[0]["status"]["worker"] == "worker-0"
    # CrashLoopBackOff: the pause before each restart grows (1 s, 2 s, 4 s, ...).
    def t(ts: str) -> float:
        import datetime as dt
        return dt.datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()

    ordered = sorted(ended, key=lambda r: r["status"]["startTime"])
    gaps = [t(b["status"]["startTime"]) - t(a["status"]["completionTime"])
            for a, b in itertools.pairwise(ordered)]
    assert len(gaps) >= 2 and all(g2 > g1 * 1.5 for g1, g2 in itertools.pairwise(gaps)), gaps
    assert gaps[0] >= 0.9, gaps
    run = ended[0]["metadata"]["name"]
    assert dev.clrk("agents", "logs", f"crasher/{run}").stdout == "crash\n"
    assert dev.clrk("agents", "logs", "crasher").stdout.count("crash\n") >= 3

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
base6=${{CLRK_METADATA_URL_V6#http://[}}; host6=${{base6%%]*}}
probe ::1 {port}
probe "$host6" {port}
probe "$host6" {api}
probe "$host6" "$mport"
probe {neighbour} 8080
probe 192.0.2.1 80
exit 0
"""


def forward_drops() -> int:
    """Packets the worker's FORWARD rule has dropped (what leaves a sandbox for anywhere
    but the host)."""
    import subprocess

    out = subprocess.run(["iptables", "-L", "FORWARD", "-v", "-x", "-n"], capture_output=True,
                         text=True, check=True).stdout
    return sum(int(line.split()[0]) for line in out.splitlines()
               if "clk0x+" in line and "DROP" in line)


def test_sandbox_reaches_only_the_metadata_service(dev: DevServer, registry: Registry) -> None:
    import http.server
    import socket
    import subprocess
    import threading

    class DualStack(http.server.ThreadingHTTPServer):
        address_family = socket.AF_INET6

        def server_bind(self) -> None:
            self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            super().server_bind()

    server = DualStack(("::", 0), http.server.SimpleHTTPRequestHandler)
    was: str | None = None
    port = server.server_address[1]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    api_port = dev.url.rsplit(":", 1)[1]
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            pass  # the host itself can reach it
        # A second sandbox, listening: a daemon that says where it is.
        daemon(dev, "listener", f"{registry.host}/test/shell:1",
               'echo "url=$CLRK_METADATA_URL"; while :; do nc -l -p 8080 </dev/null; done')
        logs = wait_for(lambda: "url=" in (o := dev.clrk("agents", "logs", "listener").stdout)
                        and o, what="the listener's address")
        host_ip = logs.split("url=http://")[1].split(":")[0]
        neighbour = host_ip.rsplit(".", 1)[0] + "." + str(int(host_ip.rsplit(".", 1)[1]) + 1)
        # Routers and Kubernetes nodes forward; make this host one for the probe, so the
        # worker's own FORWARD rule is what stops sandbox-to-sandbox traffic. The outside
        # address is blackholed first: even a broken rule sends nothing off this machine.
        subprocess.run(["ip", "route", "replace", "blackhole", "192.0.2.1/32"], check=True)
        forwarding = Path("/proc/sys/net/ipv4/ip_forward")
        was = forwarding.read_text()
        forwarding.write_text("1")
        dropped = forward_drops()
        agent(dev, "prober", f"{registry.host}/test/shell:1",
              [ISOLATION_AGENT.format(port=port, api=api_port, neighbour=neighbour)])
        r = call(dev, "prober")
        assert r.status_code == 200, (r.status_code, r.headers.get("x-clrk-reason"), r.text)
        lines = r.text.split()
        # The host's loopback, other host ports and the API server are dropped over IPv4
        # and IPv6; only the worker's metadata service answers (the positive control for
        # the probe itself); the other sandbox and an outside address are dropped too,
        # by the worker's FORWARD rule (its counter shows the packets never left).
        assert [w for w in lines if w in ("reached", "blocked")] == [
            "blocked", "blocked", "blocked", "reached"] * 2 + ["blocked", "blocked"], r.text
        assert forward_drops() > dropped
    finally:
        if was is not None:
            forwarding.write_text(was)
        subprocess.run(["ip", "route", "del", "blackhole", "192.0.2.1/32"], check=False,
                       capture_output=True)
        server.shutdown()
        dev.kubectl("delete", "da", "listener", "--ignore-not-found")


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
    st = invocation(dev, r.headers["x-clrk-invocation"])["status"]
    assert st["phase"] == "Failed" and st["reason"].startswith("WorkerLost"), st
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
    for _ in range(100):  # nothing but the new worker's spare namespaces
        netns = [n for n in subprocess.run(["ip", "netns", "list"], capture_output=True,
                                           text=True).stdout.split()
                 if n.startswith("clrk-0-") and n not in spare_networks(wdir / "sandboxes")]
        if not netns:
            break
        await asyncio.sleep(0.1)
    assert not netns
    runsc = subprocess.run(["runsc", "--root", str(wdir / "sandboxes" / "runsc"), "list",
                            "--quiet"], capture_output=True, text=True).stdout
    assert runsc.strip() == ""
    # The dead worker's Envoy died with it: one Envoy serves the restarted worker.
    for _ in range(50):
        envoys = subprocess.run(["pgrep", "-f", str(wdir / "envoy" / "bootstrap.json")],
                                capture_output=True, text=True).stdout.split()
        if len(envoys) == 1:
            break
        await asyncio.sleep(0.1)
    assert len(envoys) == 1, envoys


def test_images_are_pulled_when_a_revision_appears(dev: DevServer, registry: Registry) -> None:
    agent(dev, "prepulled", f"{registry.host}/test/word-count:0.1")
    agent(dev, "missing-image", f"{registry.host}/test/no-such-image:1")

    def revision(name: str) -> dict[str, Any]:
        return dict(json.loads(dev.kubectl("get", "asr", f"{name}-00001", "-o", "json",
                                           check=False).stdout or "{}").get("status") or {})

    def ready(name: str) -> dict[str, Any]:
        conds: list[dict[str, Any]] = revision(name).get("conditions") or []
        return next((c for c in conds if c["type"] == "Ready"), {})

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


def api_get(dev: DevServer, path: str, **params: str) -> httpx.Response:
    return httpx.get(f"{dev.url}/apis/clrk.apoxy.dev/v1alpha1/namespaces/default/{path}",
                     params=params, timeout=60, verify=dev.ssl_context(),
                     headers={"Authorization": f"Bearer {dev.token}"})


def invocation(dev: DevServer, name: str) -> dict[str, Any]:
    return dict(json.loads(dev.kubectl("get", "inv", name, "-o", "json").stdout))


def wait_revision(dev: DevServer, name: str) -> str:
    for _ in range(200):
        rev = dev.kubectl("get", "ta", name, "-o",
                          "jsonpath={.status.latestCreatedRevisionName}").stdout
        if rev:
            return rev
        time.sleep(0.1)
    raise AssertionError(f"no revision of {name}")


def test_invocations_and_logs(dev: DevServer, registry: Registry) -> None:
    agent(dev, "talker", f"{registry.host}/test/shell:1",
          # Two pipes: lines keep their order across streams only when time separates them.
          ["echo out-1; sleep 0.2; echo err-1 >&2; sleep 0.2; echo out-2; sleep 0.2; "
           "printf 'err-2' >&2"])
    revision = wait_revision(dev, "talker")
    r = call(dev, "talker", headers={"X-Clrk-Execution-ID": "talk-1"})
    assert r.status_code == 200, r.text
    name = r.headers["x-clrk-invocation"]
    inv = invocation(dev, name)
    assert inv["spec"]["agentName"] == "talker" and inv["spec"]["executionId"] == "talk-1"
    assert inv["spec"]["trigger"] == "http" and inv["spec"]["revision"] == revision
    st = inv["status"]
    assert st["phase"] == "Succeeded" and st["exitCode"] == 0 and st["worker"] == "worker-0"
    assert st["startTime"] <= st["completionTime"]
    table = dev.kubectl("get", "inv", "-l", "clrk.apoxy.dev/agent=talker").stdout
    assert name in table and "Succeeded" in table
    assert "Succeeded" in dev.clrk("agents", "invocations", "talker").stdout
    # Every line, in order, under the invocation; streams separable; tail; one invocation.
    assert dev.clrk("agents", "logs", "talker").stdout.splitlines()[-4:] == [
        "out-1", "err-1", "out-2", "err-2"]
    assert dev.clrk("agents", "logs", f"talker/{name}", "--iostream", "stderr").stdout == \
        "err-1\nerr-2\n"
    assert dev.clrk("agents", "logs", f"talker/{name}", "--tail", "1").stdout == "err-2\n"
    prefixed = dev.clrk("agents", "logs", f"talker/{name}", "--prefix").stdout
    assert f"[{name} stdout] out-1" in prefixed
    # The /logs subresource pages with limit + continue, and filters by time.
    page = api_get(dev, "taskagents/talker/logs", invocation=name, limit="3").json()
    assert [i["message"] for i in page["items"]] == ["out-1", "err-1", "out-2"]
    rest = api_get(dev, "taskagents/talker/logs", invocation=name, limit="3",
                   **{"continue": page["metadata"]["continue"]}).json()
    assert [i["message"] for i in rest["items"]] == ["err-2"]
    assert api_get(dev, "taskagents/talker/logs", since="2099-01-01T00:00:00Z").json()[
        "items"] == []
    assert api_get(dev, "taskagents/talker/logs", until="2000-01-01T00:00:00Z").json()[
        "items"] == []
    bad = api_get(dev, "taskagents/talker/logs", stream="stdin")
    assert bad.status_code == 400 and "stdin" in bad.json()["message"]
    bad = api_get(dev, "taskagents/talker/logs", tail="3")
    assert bad.status_code == 400 and "tail" in bad.json()["message"]
    # Invocations are the system's record: clients cannot write them.
    created = dev.kubectl("create", "-f", "-", check=False, input=json.dumps({
        "apiVersion": "clrk.apoxy.dev/v1alpha1", "kind": "Invocation",
        "metadata": {"name": "forged"}, "spec": {"agentKind": "TaskAgent",
                                                  "agentName": "talker"}}))
    assert created.returncode != 0
    assert dev.kubectl("delete", "inv", name, check=False).returncode != 0
    assert invocation(dev, name)["status"]["phase"] == "Succeeded"


def test_invocation_phases_for_failures(dev: DevServer, registry: Registry) -> None:
    image = f"{registry.host}/test/shell:1"
    agent(dev, "fails", image, ["echo partial; exit 3"])
    r = call(dev, "fails")
    st = invocation(dev, r.headers["x-clrk-invocation"])["status"]
    assert st["phase"] == "Failed" and st["exitCode"] == 3 and "3" in st["reason"]
    agent(dev, "sleeper", image, ["sleep 30"], timeout="1s")
    r = call(dev, "sleeper")
    st = invocation(dev, r.headers["x-clrk-invocation"])["status"]
    assert st["phase"] == "Timeout" and "spec.timeout" in st["reason"]
    agent(dev, "nowhere", image, ["true"], workerPoolRef="empty-pool")
    r = call(dev, "nowhere")
    assert r.status_code == 503
    st = invocation(dev, r.headers["x-clrk-invocation"])["status"]
    assert st["phase"] == "Rejected" and st["reason"].startswith("NoWorker")


async def test_invocation_watch_and_follow(dev: DevServer, registry: Registry) -> None:
    agent(dev, "ticker", f"{registry.host}/test/shell:1",
          ["for i in 1 2 3 4; do echo tick-$i; sleep 0.5; done"], maxConcurrent=1)
    watch = await asyncio.create_subprocess_exec(
        "kubectl", "--kubeconfig", str(dev.kubeconfig), "get", "inv", "--watch-only",
        "-l", "clrk.apoxy.dev/agent=ticker", "-o",
        "jsonpath={.metadata.name} {.status.phase}{\"\\n\"}",
        stdout=asyncio.subprocess.PIPE)
    try:
        await asyncio.sleep(1)
        async with httpx.AsyncClient(timeout=120) as client:
            running = asyncio.create_task(client.post(f"{dev.ingress}/", content=b"{}", headers={
                "X-Clrk-TaskAgent": "default/ticker", "content-type": "application/json"}))
            # The watch says when it runs (polling the CLI, a second a call, missed it).
            lines: list[list[str]] = []
            assert watch.stdout is not None
            while not any(line[1:] == ["Running"] for line in lines):
                line = (await asyncio.wait_for(watch.stdout.readline(), 60)).decode()
                assert line, "the watch ended before the invocation ran"
                lines.append(line.split())
            name = next(line[0] for line in lines if line[1:] == ["Running"])
            followed = await asyncio.to_thread(dev.clrk, "agents", "logs", f"ticker/{name}",
                                               "-f")
            r = await running
        assert r.status_code == 200
        # -f returned by itself when the invocation ended, with every line.
        assert followed.stdout.splitlines() == ["tick-1", "tick-2", "tick-3", "tick-4"]
        seen = [line[1] for line in lines if len(line) == 2 and line[0] == name]
        while "Succeeded" not in seen:
            words = (await asyncio.wait_for(watch.stdout.readline(), 30)).decode().split()
            if words and words[0] == name:
                seen.append(words[1])
        assert seen[0] == "Pending" and seen[-1] == "Succeeded"
        assert seen.index("Dispatched") < seen.index("Running")
    finally:
        watch.kill()
        await watch.wait()


def sandboxes(dev: DevServer) -> set[str]:
    import subprocess

    root = Path(dev.data_dir) / "workers" / "worker-0" / "sandboxes" / "runsc"
    out = subprocess.run(["runsc", "--root", str(root), "list", "--quiet"],
                         capture_output=True, text=True).stdout
    return set(out.split())


def wait_for(pred: Any, timeout: float = 60, what: str = "",
             show: Any = lambda: None) -> Any:
    """``show`` says what was seen last when it times out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if got := pred():
            return got
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}: {show()}")


def test_warm_pool(dev: DevServer, registry: Registry) -> None:
    image = f"{registry.host}/test/word-count:0.1"
    assert sandboxes(dev) == set()
    agent(dev, "warm-wc", image, warmPoolSize=2)
    first = wait_for(lambda: s if len(s := sandboxes(dev)) == 2 else None, what="2 warm")
    for i in range(3):
        r = call(dev, "warm-wc", headers={"X-Clrk-Execution-ID": f"warm-{i}"})
        assert r.status_code == 200 and r.json() == {"word_count": 4,
                                                      "envelope_id": f"warm-{i}"}
        st = invocation(dev, r.headers["x-clrk-invocation"])["status"]
        assert st["warmStart"] is True, st
        # Each sandbox serves once; the pool refills to two.
        wait_for(lambda: len(sandboxes(dev)) == 2, what="the refill")
    log = Path(dev.data_dir) / "workers" / "worker-0" / "worker.log"
    assert "warm hit for default/warm-wc" in log.read_text()
    # A template change evicts the old revision's sandboxes and warms the new one.
    before = sandboxes(dev)
    agent(dev, "warm-wc", image, env={"TEMPLATE": "v2"}, warmPoolSize=2)
    wait_for(lambda: not (sandboxes(dev) & before) and len(sandboxes(dev)) == 2,
             what="eviction on the template change")
    assert first.isdisjoint(sandboxes(dev))
    # Metadata delivery waits in GET /v1/event until the invocation delivers its event.
    agent(dev, "warm-meta", f"{registry.host}/test/shell:1", [METADATA_AGENT],
          delivery={"mode": "Metadata"}, warmPoolSize=1)
    wait_for(lambda: len(sandboxes(dev)) == 3, what="the metadata agent's warm sandbox")
    r = call(dev, "warm-meta")
    assert r.status_code == 200 and r.text.startswith("reply:"), r.text
    assert invocation(dev, r.headers["x-clrk-invocation"])["status"]["warmStart"] is True
    # Deleting the agents evicts everything they had warm.
    dev.kubectl("delete", "ta", "warm-wc", "warm-meta")
    wait_for(lambda: sandboxes(dev) == set(), what="eviction on deletion")


def test_warm_pool_goes_cold_when_idle(dev: DevServer, registry: Registry) -> None:
    agent(dev, "idle-wc", f"{registry.host}/test/shell:1", ["cat >/dev/null; echo ok"],
          warmPoolSize=1, warmPoolIdleTTL="2s")
    wait_for(lambda: len(sandboxes(dev)) == 1, what="a warm sandbox")
    wait_for(lambda: sandboxes(dev) == set(), what="the idle TTL eviction")
    r = call(dev, "idle-wc")  # a cold start, which warms the pool again
    assert r.status_code == 200 and r.text == "ok\n"
    assert invocation(dev, r.headers["x-clrk-invocation"])["status"]["warmStart"] is False
    wait_for(lambda: len(sandboxes(dev)) == 1, what="re-warming after use")
    dev.kubectl("delete", "ta", "idle-wc")
    wait_for(lambda: sandboxes(dev) == set(), what="eviction on deletion")


def test_image_pull_secrets_of_the_pool(dev: DevServer, registry: Registry,
                                        private: AuthRegistry) -> None:
    image = f"{private.host}/test/shell:1"
    agent(dev, "private", image, ["echo pulled with a secret"])
    r = call(dev, "private")
    assert r.status_code == 500
    st = invocation(dev, r.headers["x-clrk-invocation"])["status"]
    assert st["phase"] == "Failed" and st["reason"].startswith("ImagePullFailed")
    assert "refused a pull token" in st["reason"]
    dev.kubectl("create", "secret", "docker-registry", "regcred",
                f"--docker-server={private.host}", "--docker-username=puller",
                "--docker-password=s3cret")
    dev.kubectl("patch", "wp", "default", "--type=merge", "-p",
                '{"spec":{"template":{"imagePullSecrets":[{"name":"regcred"}]}}}')
    try:
        r = wait_for(lambda: (r := call(dev, "private")).status_code == 200 and r,
                     what="a pull with the pool's imagePullSecrets")
        assert r.text == "pulled with a secret\n"
        # run-task shows a pull it waits on as a progress bar.
        registry.push("test/slow", "1", with_layer(
            build(busybox_recipe(Entrypoint=["/bin/sh", "-c"])),
            Layer({"filler.bin": os.urandom(1 << 20)})))
        private.blob_delay = 4.0
        agent(dev, "slow-pull", f"{private.host}/test/slow:1", ["echo slow"])
        wait_revision(dev, "slow-pull")
        done = dev.clrk("agents", "run-task", "slow-pull")
        assert done.stdout == "slow\n"
        assert f"pulling {private.host}/test/slow:1" in done.stderr, done.stderr
        assert "1.1 MB" in done.stderr or "MB" in done.stderr, done.stderr
    finally:
        private.blob_delay = 0.0
        dev.kubectl("patch", "wp", "default", "--type=merge", "-p",
                    '{"spec":{"template":{"imagePullSecrets":null}}}')


VENV_AGENT = """
import json, sys
import anthropic, mcp, openai
event = json.load(sys.stdin)
print(json.dumps({"sdks": [m.__name__ for m in (anthropic, mcp, openai)],
                  "prefix": sys.prefix, "data": event["data"]}))
"""


def test_python_image_venv_with_offline_wheels(dev: DevServer, registry: Registry) -> None:
    agent(dev, "venv", f"{registry.host}/test/word-count:0.1",
          command=["/opt/venv/bin/python", "-c", VENV_AGENT])
    r = call(dev, "venv", body=b'{"q": 1}')
    assert r.status_code == 200, r.text
    assert r.json() == {"sdks": ["anthropic", "mcp", "openai"], "prefix": "/opt/venv",
                        "data": {"q": 1}}


def test_daemon_has_a_network_and_the_metadata_service(dev: DevServer,
                                                       registry: Registry) -> None:
    script = ('echo "url=$CLRK_METADATA_URL"; '
              'timeout 5 wget -q -O /dev/null "$CLRK_METADATA_URL/event" 2>&1 | grep -o 404; '
              'sleep 100')
    daemon(dev, "netd", f"{registry.host}/test/shell:1", script)
    try:
        out = wait_for(lambda: "404" in (o := dev.clrk("agents", "logs", "netd").stdout) and o,
                       what="the daemon's metadata probe")
        assert "url=http://10.213." in out and out.rstrip().endswith("404")
    finally:
        dev.kubectl("delete", "da", "netd")


METADATA_V6_AGENT = """
case "$CLRK_METADATA_URL_V6" in http://?fd0c:c1a0:*) ;; *) exit 21 ;; esac
wget -q -O /tmp/event "$CLRK_METADATA_URL_V6/event" || exit 22
wget -q -O /dev/null --post-data "v6:$(grep -o '"subject":"[a-z]*"' /tmp/event)" \
  "$CLRK_METADATA_URL_V6/response" || exit 23
"""


def test_metadata_service_over_ipv6(dev: DevServer, registry: Registry) -> None:
    agent(dev, "meta6", f"{registry.host}/test/shell:1", [METADATA_V6_AGENT],
          delivery={"mode": "Metadata"})
    r = call(dev, "meta6")
    assert r.status_code == 200, (r.status_code, r.headers.get("x-clrk-exit-code"), r.text)
    assert r.text == 'v6:"subject":"http"'


def test_bad_images_fail_with_clear_reasons(dev: DevServer, registry: Registry) -> None:
    """A malformed reference, a missing image, a registry that is down and a layer with
    ``../`` entries: each fails its revision and its invocations with a reason, and the
    hostile layer writes nothing outside the worker's image cache."""
    images = Path(dev.data_dir) / "workers" / "worker-0" / "images"
    escaped = images.parent / "escaped"
    registry.push("test/evil", "1", build(Recipe(
        "evil-e2e", [Layer({"../../escaped": b"x"})], {"Env": []})))
    bad = dev.kubectl("apply", "-f", "-", check=False, input=json.dumps({
        "apiVersion": "clrk.apoxy.dev/v1alpha1", "kind": "TaskAgent",
        "metadata": {"name": "malformed"},
        "spec": {"workerPoolRef": "default",
                 "template": {"spec": {"image": "Bad//Image::ref"}}}}))
    assert bad.returncode != 0 and "spec.template.spec.image" in bad.stderr, bad.stderr
    cases = {"missing": (f"{registry.host}/test/no-such-image:1", "not found"),
             "down": ("127.0.0.1:1/test/shell:1", "unreachable"),
             "evil": (f"{registry.host}/test/evil:1", "escapes the root")}
    for name, (image, _) in cases.items():
        agent(dev, f"bad-{name}", image, ["true"])
    for name, (_, words) in cases.items():
        cond = wait_for(lambda n=name: next(
            (c for c in json.loads(dev.kubectl("get", "asr", f"bad-{n}-00001", "-o", "json",
                                               check=False).stdout or "{}")
             .get("status", {}).get("conditions") or [] if c["type"] == "Ready"), None),
            what=f"the bad-{name} revision's verdict")
        assert cond["status"] == "False" and cond["reason"] == "ImagePullFailed", cond
        assert words in cond["message"], cond
        r = call(dev, f"bad-{name}")
        st = invocation(dev, r.headers["x-clrk-invocation"])["status"]
        assert r.status_code == 500 and st["phase"] == "Failed", st
        assert st["reason"].startswith("ImagePullFailed") and words in st["reason"], st
    assert not escaped.exists()
    assert not list(images.glob("images/.unpack-*"))
    for name in cases:
        dev.kubectl("delete", "ta", f"bad-{name}")


def test_bombs_are_contained_and_the_worker_stays_healthy(dev: DevServer,
                                                          registry: Registry) -> None:
    image = f"{registry.host}/test/shell:1"
    small = {"resources": {"limits": {"memory": "64Mi"}}}
    doc = {"apiVersion": "clrk.apoxy.dev/v1alpha1", "kind": "TaskAgent",
           "metadata": {"name": "membomb"},
           "spec": {"workerPoolRef": "default", "timeout": "60s", "template": {"spec": {
               "image": image, "args": ["a=xxxxxxxxxxxxxxxx; while :; do a=$a$a; done"],
               **small}}}}
    dev.kubectl("apply", "-f", "-", input=json.dumps(doc))
    agent(dev, "forkbomb", image, ["while :; do sleep 30 & done"])
    agent(dev, "tmpfill", image, ["dd if=/dev/zero of=/tmp/fill bs=1M count=200 2>/dev/null;"
                                  " ls -l /tmp/fill | tr -s ' ' | cut -d' ' -f5"])
    r = call(dev, "membomb")
    st = invocation(dev, r.headers["x-clrk-invocation"])["status"]
    assert r.status_code == 500 and st["phase"] == "Failed", st
    assert st["reason"].startswith("OOMKilled"), st
    r = call(dev, "forkbomb")
    st = invocation(dev, r.headers["x-clrk-invocation"])["status"]
    assert r.status_code == 500 and st["reason"].startswith("PidsLimit"), st
    # resources.pids goes from the manifest to the sandbox: 64 children fit the default,
    # and end an agent that asked for 8 with the reason in its own units.
    fan_out = "i=0; while [ $i -lt 64 ]; do sleep 1000 & i=$((i+1)); done; echo spawned"
    agent(dev, "fanout", image, [fan_out])
    r = call(dev, "fanout")
    assert (r.status_code, r.text) == (200, "spawned\n"), r.text
    doc = {"apiVersion": "clrk.apoxy.dev/v1alpha1", "kind": "TaskAgent",
           "metadata": {"name": "fanout-8"},
           "spec": {"workerPoolRef": "default", "timeout": "60s", "template": {"spec": {
               "image": image, "args": [fan_out], "resources": {"pids": 8}}}}}
    dev.kubectl("apply", "-f", "-", input=json.dumps(doc))
    r = call(dev, "fanout-8")
    st = invocation(dev, r.headers["x-clrk-invocation"])["status"]
    assert r.status_code == 500 and st["reason"].startswith(
        "PidsLimit: the agent reached its limit of 8 processes and threads"), st
    r = call(dev, "tmpfill")
    assert r.status_code == 200 and 0 < int(r.text) <= 64 * 1024 * 1024, r.text
    # The worker is fine: it serves the next call and leaves nothing behind.
    agent(dev, "after", image, ["echo still-fine"])
    assert call(dev, "after").text == "still-fine\n"
    wait_for(lambda: leftovers(dev) == [], what="cleanup after the bombs",
             show=lambda: leftovers(dev))
