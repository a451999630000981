"""Kill -9 of the whole `clrk dev` tree while invocations are being answered, repeated:
what a caller was told is what the record says afterwards.

Every invocation whose answer the client received completely is listed after the
restart with the phase the answer implied and all its output lines (the telemetry
journal); only those that never answered may be Interrupted; and no sandbox is left in
`runsc list` once the restarted worker has swept.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import DevServer, start_dev
from tests.images import Registry, build, busybox_recipe

pytestmark = pytest.mark.e2e
G = "clrk.apoxy.dev/v1alpha1"
ROUNDS = 3
ANSWERS_BEFORE_KILL = 8


def tree(root: int) -> list[int]:
    """``root`` and every process under it."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo += children.get(pid, [])
    return out


def kill_tree(dev: DevServer) -> None:
    """SIGSTOP everything first (nothing gets to react), then SIGKILL it all."""
    pids = tree(dev.proc.pid)
    for sig in (signal.SIGSTOP, signal.SIGKILL):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
    dev.proc.wait()


def api_get(dev: DevServer, path: str) -> httpx.Response:
    return httpx.get(f"{dev.url}/apis/{G}/namespaces/default/{path}", timeout=60,
                     verify=dev.ssl_context(), headers={"Authorization": f"Bearer {dev.token}"})


def runsc_list(dev: DevServer) -> list[str]:
    root = dev.data_dir / "workers" / "worker-0" / "sandboxes" / "runsc"
    if not root.exists():
        return []
    r = subprocess.run(["runsc", "--root", str(root), "list", "--quiet"], capture_output=True,
                       text=True, check=False)
    return r.stdout.split()


def load_then_kill(dev: DevServer, round_: int, answered: dict[str, bytes]) -> None:
    """Four callers invoke in a loop; after enough complete answers, kill -9 the tree
    while the others are in flight."""
    lock = threading.Lock()
    enough = threading.Event()

    def caller(i: int) -> None:
        while not enough.is_set():
            try:
                r = httpx.post(f"{dev.ingress}/", timeout=120,
                               content=json.dumps({"round": round_, "i": i}).encode(),
                               headers={"X-Clrk-TaskAgent": "default/crashy",
                                        "X-Clrk-Trigger": "http",
                                        "content-type": "application/json"})
            except httpx.HTTPError:
                return  # cut off by the kill: never answered
            with lock:
                if r.status_code == 200:
                    answered[r.headers["x-clrk-invocation"]] = r.content
                    if len(answered) >= ANSWERS_BEFORE_KILL * (round_ + 1):
                        enough.set()

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(caller, i) for i in range(4)]
        assert enough.wait(300), f"fewer than {ANSWERS_BEFORE_KILL} answers"
        kill_tree(dev)
        for f in futures:
            f.result()


def test_kill_9_under_load_loses_no_answered_execution(registry: Registry,
                                                       tmp_path: Path) -> None:
    registry.push("test/shell", "1", build(busybox_recipe(Entrypoint=["/bin/sh", "-c"])))
    data = tmp_path / "clrk"
    answered: dict[str, bytes] = {}  # invocation answered 200 -> its body
    interrupted_ok = 0
    for round_ in range(ROUNDS):
        dev = start_dev(data, "--insecure-registry", registry.host, workers=1)
        try:
            dev.wait_for_worker()
            if round_ == 0:
                doc = {"apiVersion": G, "kind": "TaskAgent", "metadata": {"name": "crashy"},
                       "spec": {"workerPoolRef": "default", "timeout": "60s",
                                "template": {"spec": {
                                    "image": f"{registry.host}/test/shell:1",
                                    "args": ["cat; echo; echo second line; "
                                             "echo to-stderr >&2"]}}}}
                dev.kubectl("apply", "-f", "-", input=json.dumps(doc))
            load_then_kill(dev, round_, answered)
        finally:
            if dev.proc.poll() is None:
                kill_tree(dev)

    dev = start_dev(data, "--insecure-registry", registry.host, workers=1)
    try:
        dev.wait_for_worker()
        lost = []
        for name, body in answered.items():
            inv = api_get(dev, f"invocations/{name}")
            assert inv.status_code == 200, (name, inv.text)
            phase = inv.json()["status"]["phase"]
            if phase != "Succeeded":
                lost.append((name, phase, inv.json()["status"].get("reason")))
                continue
            logs = api_get(dev, f"taskagents/crashy/logs?invocation={name}").json()["items"]
            stdout = [x["message"] for x in logs if x["stream"] == "stdout"]
            stderr = [x["message"] for x in logs if x["stream"] == "stderr"]
            assert stdout == body.decode().splitlines(), (name, stdout, body)
            assert stderr == ["to-stderr"], (name, stderr)
        assert not lost, f"answered 200 but recorded otherwise: {lost}"
        every = api_get(dev, "invocations").json()["items"]
        for inv in every:
            if inv["status"].get("reason", "").startswith("Interrupted"):
                assert inv["metadata"]["name"] not in answered
                interrupted_ok += 1
        print(f"{len(answered)} answered invocations over {ROUNDS} kills, all recorded with "
              f"their output; {interrupted_ok} never-answered ones Interrupted")
        deadline = time.monotonic() + 30
        while runsc_list(dev) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert runsc_list(dev) == [], "sandboxes left in runsc list after the sweep"
    finally:
        dev.stop()
    assert runsc_list(dev) == []
