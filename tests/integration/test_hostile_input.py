"""Small hostile bodies get a 4xx at once and stall nobody else.

A 626-byte YAML alias bomb once held the API server's event loop for 20 to 45 s and a JSON
patch of 22 self-copies took 16.7 s and about 1 GB. Each is sent here while a real `kubectl
get -w` and a worker's heartbeats are being served; the delays they saw are printed, not
asserted on (the machine's load is not the test's to judge).
"""

from __future__ import annotations

import asyncio
import json
import ssl
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from clrk.controlplane.apiserver import APIServer

G = "clrk.apoxy.dev/v1alpha1"
BASE = f"/apis/{G}/namespaces/default"


def billion_laughs(levels: int = 9, width: int = 9) -> str:
    doc = 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
    prev = "a"
    for name in "bcdefghijklmnop"[:levels - 1]:
        doc += f"{name}: &{name} [{','.join([f'*{prev}'] * width)}]\n"
        prev = name
    return doc


def alias_bomb_manifest() -> str:
    """The bomb inside a TaskAgent manifest, as a hostile `kubectl apply` would send it."""
    lines = ["apiVersion: clrk.apoxy.dev/v1alpha1", "kind: TaskAgent",
             "metadata: {name: bomb}", "spec:", "  template:", "    spec:",
             "      image: busybox", "      env:",
             '      - {name: A, value: &a "lollollollollollollollollollol"}']
    lines.append("  x0: &x0 [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]")
    for i in range(1, 9):
        lines.append(f"  x{i}: &x{i} [" + ", ".join([f"*x{i - 1}"] * 10) + "]")
    return "\n".join(lines) + "\n"


def hostile_requests() -> list[tuple[str, str, str, str, bytes]]:
    """(what, method, path, content type, body)."""
    deep = 5000
    ta = {"apiVersion": G, "kind": "TaskAgent", "metadata": {"name": "big"},
          "spec": {"template": {"spec": {"image": "busybox", "command": ["x" * (3 << 20)]}}}}
    return [
        ("YAML alias bomb (626 bytes)", "POST", f"{BASE}/taskagents",
         "application/yaml", alias_bomb_manifest().encode()),
        ("billion laughs", "POST", f"{BASE}/taskagents", "application/yaml",
         billion_laughs().encode()),
        ("billion laughs as apply", "PATCH", f"{BASE}/taskagents/laughs",
         "application/apply-patch+yaml", billion_laughs().encode()),
        ("deeply nested JSON", "POST", f"{BASE}/taskagents", "application/json",
         b'{"a":' * deep + b"1" + b"}" * deep),
        ("deeply nested YAML", "POST", f"{BASE}/taskagents", "application/yaml",
         b"a: " + b"[" * deep + b"]" * deep),
        ("deeply nested YAML (block)", "POST", f"{BASE}/taskagents", "application/yaml",
         "".join("  " * i + f"k{i}:\n" for i in range(400)).encode()),
        ("3 MiB string", "POST", f"{BASE}/taskagents", "application/json",
         json.dumps(ta).encode()),
        ("deeply nested heartbeat", "POST", f"{BASE}/workerpools/default/heartbeat",
         "application/json", b"[" * deep + b"]" * deep),
    ]


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[APIServer]:
    s = APIServer(tmp_path / "data")
    await s.start()
    try:
        yield s
    finally:
        await s.stop()


def client(server: APIServer) -> httpx.AsyncClient:
    ctx = ssl.create_default_context(cadata=server.ca_pem.decode())
    return httpx.AsyncClient(base_url=server.url, verify=ctx, timeout=120,
                             headers={"Authorization": f"Bearer {server.token}"})


async def test_hostile_bodies_get_4xx_while_watches_and_heartbeats_go_on(
        server: APIServer, tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    server.write_kubeconfig(kubeconfig)
    watch = subprocess.Popen(["kubectl", "--kubeconfig", str(kubeconfig), "get", "ta", "-w",
                              "-o", "name", "--request-timeout=0"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    heartbeat_delays: list[float] = []
    watch_delays: list[float] = []
    stop = asyncio.Event()
    try:
        async with client(server) as api:
            r = await api.post(f"{BASE}/taskagents", json={
                "apiVersion": G, "kind": "TaskAgent", "metadata": {"name": "seen"},
                "spec": {"template": {"spec": {"image": "busybox"}}}})
            assert r.status_code == 201, r.text
            assert watch.stdout is not None
            out = watch.stdout
            assert await asyncio.to_thread(out.readline) == "taskagent.clrk.apoxy.dev/seen\n"

            async def heartbeats() -> None:
                doc = {"name": "w0", "url": "http://127.0.0.1:1", "capacity": 1}
                while not stop.is_set():
                    t = time.monotonic()
                    r = await api.post(f"{BASE}/workerpools/default/heartbeat", json=doc)
                    assert r.status_code == 200, r.text
                    heartbeat_delays.append(time.monotonic() - t)
                    await asyncio.sleep(0.05)

            async def watched_updates() -> None:
                i = 0
                while not stop.is_set():
                    i += 1
                    t = time.monotonic()
                    r = await api.patch(f"{BASE}/taskagents/seen",
                                        json={"metadata": {"labels": {"i": str(i)}}},
                                        headers={"Content-Type": "application/merge-patch+json"})
                    assert r.status_code == 200, r.text
                    line = ""
                    while line != "taskagent.clrk.apoxy.dev/seen\n":  # (big's own events)
                        line = await asyncio.to_thread(out.readline)
                        assert line, "the watch ended"
                    watch_delays.append(time.monotonic() - t)
                    await asyncio.sleep(0.05)

            background = [asyncio.create_task(heartbeats()),
                          asyncio.create_task(watched_updates())]
            try:
                for what, method, path, ctype, body in hostile_requests():
                    t = time.monotonic()
                    r = await api.request(method, path, content=body,
                                          headers={"Content-Type": ctype},
                                          params={"fieldManager": "hostile"}
                                          if "apply" in ctype else None)
                    took = time.monotonic() - t
                    print(f"{what}: {r.status_code} in {took * 1000:.0f} ms: "
                          f"{r.json().get('message', '')[:100]}")
                    assert 400 <= r.status_code < 500, (what, r.status_code, r.text[:300])
                    assert r.json()["kind"] == "Status"
                patch = [{"op": "copy", "from": "/spec", "path": "/spec/template/a"}] + [
                    {"op": "copy", "from": "/spec/template", "path": f"/spec/template/c{i}"}
                    for i in range(22)]
                r = await api.patch(f"{BASE}/taskagents/seen", json=patch,
                                    headers={"Content-Type": "application/json-patch+json"})
                print(f"JSON patch of 22 self-copies: {r.status_code}: {r.json()['message']}")
                assert r.status_code == 413, r.text
                # Not hostile, only large: 20 000 annotations, applied twice (server-side
                # apply compared every pair of fields: 100 s for 10 000, on the loop).
                big = {"apiVersion": G, "kind": "TaskAgent", "metadata": {
                    "name": "big", "annotations": {f"k{i}": "v" for i in range(20_000)}},
                    "spec": {"template": {"spec": {"image": "busybox"}}}}
                for manager in ("one", "two"):
                    t = time.monotonic()
                    r = await api.patch(f"{BASE}/taskagents/big", content=json.dumps(big),
                                        params={"fieldManager": manager, "force": "true"},
                                        headers={"Content-Type": "application/apply-patch+yaml"})
                    assert r.status_code in (200, 201), r.text
                    print(f"apply of 20 000 annotations by {manager}: {r.status_code} in "
                          f"{(time.monotonic() - t) * 1000:.0f} ms")
            finally:
                stop.set()
                await asyncio.gather(*background)
            r = await api.get(f"{BASE}/taskagents")
            names = [o["metadata"]["name"] for o in r.json()["items"]]
            assert names == ["big", "seen"], names  # nothing stored by a refused request
    finally:
        watch.terminate()
        watch.wait(10)

    def describe(xs: list[float]) -> str:
        xs = sorted(xs)
        return (f"n={len(xs)} p50={xs[len(xs) // 2] * 1000:.1f} ms "
                f"max={xs[-1] * 1000:.1f} ms")

    print(f"heartbeats during the hostile requests: {describe(heartbeat_delays)}")
    print(f"watched updates (write -> kubectl -w line): {describe(watch_delays)}")
    assert heartbeat_delays and watch_delays


async def test_refused_bodies_store_nothing_and_name_the_bound(server: APIServer) -> None:
    async with client(server) as api:
        for what, method, path, ctype, body in hostile_requests():
            r = await api.request(method, path, content=body, headers={"Content-Type": ctype},
                                  params={"fieldManager": "x"} if "apply" in ctype else None)
            status: dict[str, Any] = r.json()
            assert 400 <= r.status_code < 500, (what, r.text[:300])
            assert any(w in status["message"] for w in (
                "nested more than", "values", "bytes", "YAML")), (what, status["message"])
        r = await api.get(f"{BASE}/taskagents")
        assert r.json()["items"] == []
