"""The API server's lifecycle and protocol edges: auth, CRUD, restarts, consistent lists,
legacy watch paths, many watches at once, and real kubectl against the in-process server."""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from clrk.controlplane.apiserver import APIServer

GROUP_PATH = "/apis/clrk.apoxy.dev/v1alpha1"
BASE = f"{GROUP_PATH}/namespaces/default"
MERGE = {"Content-Type": "application/merge-patch+json"}


def agent(name: str, **metadata: Any) -> dict[str, Any]:
    return {"apiVersion": "clrk.apoxy.dev/v1alpha1", "kind": "TaskAgent",
            "metadata": {"name": name, **metadata},
            "spec": {"template": {"spec": {"image": "busybox:1.36"}}}}


def client(server: APIServer, token: str | None = None, **kw: Any) -> httpx.AsyncClient:
    ctx = ssl.create_default_context(cadata=server.ca_pem.decode())
    headers = {"Authorization": f"Bearer {token or server.token}"}
    return httpx.AsyncClient(base_url=server.url, verify=ctx, timeout=30, headers=headers,
                             **kw)


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[APIServer]:
    s = APIServer(tmp_path / "data", watch_history=20, bookmark_interval=0.2)
    await s.start()
    try:
        yield s
    finally:
        await s.stop()


@pytest.fixture
async def api(server: APIServer) -> AsyncIterator[httpx.AsyncClient]:
    async with client(server) as c:
        yield c


async def post(api: httpx.AsyncClient, obj: dict[str, Any], url: str = f"{BASE}/taskagents"
               ) -> dict[str, Any]:
    r = await api.post(url, json=obj)
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    return body


async def watch_lines(api: httpx.AsyncClient, url: str, count: int,
                      limit: float = 20) -> list[dict[str, Any]]:
    """The first ``count`` events of a watch (a deadline guards against a hang only)."""
    events: list[dict[str, Any]] = []

    async def run() -> None:
        async with api.stream("GET", url) as r:
            assert r.status_code == 200, await r.aread()
            async for line in r.aiter_lines():
                if line.strip():
                    events.append(json.loads(line))
                    if len(events) == count:
                        return

    await asyncio.wait_for(run(), limit)
    return events


async def test_token_is_required_except_for_health(server: APIServer) -> None:
    ctx = ssl.create_default_context(cadata=server.ca_pem.decode())
    async with httpx.AsyncClient(base_url=server.url, verify=ctx) as anon:
        for path in ("/healthz", "/livez", "/readyz", "/version"):
            assert (await anon.get(path)).status_code == 200, path
        assert (await anon.get("/version")).json()["gitVersion"].startswith("v1.32.0")
        r = await anon.get(f"{BASE}/taskagents")
        assert r.status_code == 401
        assert r.json()["kind"] == "Status" and r.json()["reason"] == "Unauthorized"
    async with client(server, token="wrong") as bad:
        assert (await bad.get("/api")).status_code == 401
    token_file = server.data_dir / "token"
    assert token_file.stat().st_mode & 0o777 == 0o600
    assert token_file.read_text().strip() == server.token


async def test_crud_round_trip(api: httpx.AsyncClient) -> None:
    created = await post(api, agent("crud"))
    md = created["metadata"]
    assert md["uid"] and md["generation"] == 1 and md["creationTimestamp"].endswith("Z")
    assert md["namespace"] == "default" and md["managedFields"]
    got = (await api.get(f"{BASE}/taskagents/crud")).json()
    assert got == created
    listed = (await api.get(f"{BASE}/taskagents")).json()
    assert listed["kind"] == "TaskAgentList" and listed["metadata"]["resourceVersion"]
    assert listed["items"][0]["kind"] == "TaskAgent"
    # The same list across namespaces.
    assert len((await api.get(f"{GROUP_PATH}/taskagents")).json()["items"]) == 1
    r = await api.post(f"{BASE}/taskagents", json=agent("crud"))
    assert r.status_code == 409 and r.json()["reason"] == "AlreadyExists"
    got["metadata"]["labels"] = {"a": "b"}
    got["metadata"]["uid"] = "not-the-uid"  # server-owned: kept from the stored object
    r = await api.put(f"{BASE}/taskagents/crud", json=got)
    assert r.status_code == 200, r.text
    assert r.json()["metadata"]["labels"] == {"a": "b"}
    assert r.json()["metadata"]["uid"] == md["uid"]
    assert int(r.json()["metadata"]["resourceVersion"]) > int(md["resourceVersion"])
    r = await api.put(f"{BASE}/taskagents/ghost", json=agent("ghost"))
    assert r.status_code == 404 and r.json()["reason"] == "NotFound"
    r = await api.delete(f"{BASE}/taskagents/crud")
    assert r.status_code == 200 and r.json()["metadata"]["name"] == "crud"
    r = await api.get(f"{BASE}/taskagents/crud")
    assert r.status_code == 404
    assert r.json()["message"] == 'taskagents.clrk.apoxy.dev "crud" not found'


async def test_create_checks_identity(api: httpx.AsyncClient) -> None:
    generated = await post(api, {**agent(""), "metadata": {"generateName": "gen-"}})
    assert generated["metadata"]["name"].startswith("gen-")
    r = await api.post(f"{BASE}/taskagents", json={**agent("k"), "kind": "DaemonAgent"})
    assert r.status_code == 400 and "kind" in r.json()["message"]
    r = await api.post(f"{BASE}/taskagents", json=agent("ns", namespace="clrk"))
    assert r.status_code == 400 and "namespace" in r.json()["message"]
    r = await api.post(f"{BASE}/taskagents", json=agent("lbl", labels={"bad key!": "v"}))
    assert r.status_code == 422 and "metadata.labels" in r.json()["message"]
    r = await api.post(f"{BASE}/taskagents", content=b"apiVersion: clrk.apoxy.dev/v1alpha1\n"
                       b"kind: TaskAgent\nmetadata: {name: from-yaml}\n"
                       b"spec: {template: {spec: {image: busybox}}}\n",
                       headers={"Content-Type": "application/yaml"})
    assert r.status_code == 201, r.text


async def test_delete_preconditions_and_collections(api: httpx.AsyncClient) -> None:
    obj = await post(api, agent("pre"))
    r = await api.request("DELETE", f"{BASE}/taskagents/pre",
                          json={"preconditions": {"uid": "someone-else"}})
    assert r.status_code == 409
    r = await api.request("DELETE", f"{BASE}/taskagents/pre",
                          json={"preconditions": {"uid": obj["metadata"]["uid"]}})
    assert r.status_code == 200
    for i in range(4):
        await post(api, agent(f"c{i}", labels={"batch": "x" if i < 3 else "y"}))
    r = await api.delete(f"{BASE}/taskagents", params={"labelSelector": "batch=x"})
    assert r.status_code == 200 and len(r.json()["items"]) == 3
    names = [i["metadata"]["name"] for i in (await api.get(f"{BASE}/taskagents")).json()[
        "items"]]
    assert names == ["c3"]


async def test_lists_read_a_consistent_version(api: httpx.AsyncClient) -> None:
    for i in range(5):
        await post(api, agent(f"p{i}"))
    first = (await api.get(f"{BASE}/taskagents", params={"limit": 2})).json()
    assert [i["metadata"]["name"] for i in first["items"]] == ["p0", "p1"]
    assert first["metadata"]["remainingItemCount"] == 3
    # Changes after the first page do not show in later pages of the same list.
    await api.delete(f"{BASE}/taskagents/p3")
    await post(api, agent("p2a"))
    rest = (await api.get(f"{BASE}/taskagents", params={
        "limit": 10, "continue": first["metadata"]["continue"]})).json()
    assert [i["metadata"]["name"] for i in rest["items"]] == ["p2", "p3", "p4"]
    assert rest["metadata"]["resourceVersion"] == first["metadata"]["resourceVersion"]
    assert "continue" not in rest["metadata"]
    # An exact version lists what existed then.
    exact = (await api.get(f"{BASE}/taskagents", params={
        "resourceVersion": first["metadata"]["resourceVersion"],
        "resourceVersionMatch": "Exact"})).json()
    assert len(exact["items"]) == 5
    now = (await api.get(f"{BASE}/taskagents")).json()
    assert [i["metadata"]["name"] for i in now["items"]] == ["p0", "p1", "p2", "p2a", "p4"]
    r = await api.get(f"{BASE}/taskagents", params={"resourceVersion": "999999"})
    assert r.status_code == 504
    r = await api.get(f"{BASE}/taskagents", params={"continue": "garbage"})
    assert r.status_code == 400
    r = await api.get(f"{BASE}/taskagents", params={"limit": "many"})
    assert r.status_code == 400 and "limit" in r.json()["message"]
    # Push the event log (20 entries) past that version: an exact list is now 410 Gone.
    for i in range(20):
        await api.patch(f"{BASE}/taskagents/p0", headers=MERGE,
                        json={"metadata": {"labels": {"n": str(i)}}})
    r = await api.get(f"{BASE}/taskagents", params={
        "resourceVersion": first["metadata"]["resourceVersion"],
        "resourceVersionMatch": "Exact"})
    assert r.status_code == 410 and r.json()["reason"] == "Expired"


async def test_initial_events_end_with_a_bookmark(api: httpx.AsyncClient) -> None:
    await post(api, agent("i1"))
    await post(api, agent("i2"))
    events = await watch_lines(
        api, f"{BASE}/taskagents?watch=1&sendInitialEvents=true&allowWatchBookmarks=true"
             "&resourceVersionMatch=NotOlderThan", 3)
    assert [e["type"] for e in events] == ["ADDED", "ADDED", "BOOKMARK"]
    bookmark = events[-1]["object"]
    assert bookmark["metadata"]["annotations"] == {"k8s.io/initial-events-end": "true"}
    assert set(bookmark) == {"kind", "apiVersion", "metadata"}


async def test_legacy_watch_path_of_one_object(api: httpx.AsyncClient) -> None:
    await post(api, agent("other"))
    mine = await post(api, agent("mine"))
    url = f"{GROUP_PATH}/watch/namespaces/default/taskagents/mine"
    task = asyncio.create_task(watch_lines(
        api, f"{url}?resourceVersion={mine['metadata']['resourceVersion']}", 1))
    await api.patch(f"{BASE}/taskagents/other", headers=MERGE,
                    json={"metadata": {"labels": {"x": "1"}}})
    await api.patch(f"{BASE}/taskagents/mine", headers=MERGE,
                    json={"metadata": {"labels": {"x": "2"}}})
    events = await task
    assert events[0]["type"] == "MODIFIED"
    assert events[0]["object"]["metadata"]["name"] == "mine"


async def test_table_watch_events(api: httpx.AsyncClient) -> None:
    await post(api, agent("tw"))
    r = await api.get(f"{BASE}/taskagents/tw", params={"includeObject": "None"},
                      headers={"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io"})
    assert r.json()["kind"] == "Table" and "object" not in r.json()["rows"][0]
    async with api.stream("GET", f"{BASE}/taskagents?watch=true", headers={
            "Accept": "application/json;as=Table;v=v1;g=meta.k8s.io"}) as s:
        async for line in s.aiter_lines():
            event = json.loads(line)
            assert event["type"] == "ADDED" and event["object"]["kind"] == "Table"
            assert event["object"]["rows"][0]["cells"][0] == "tw"
            break


async def test_restart_keeps_objects_versions_and_watch_history(tmp_path: Path) -> None:
    data = tmp_path / "data"
    first = APIServer(data, watch_history=100)
    await first.start()
    try:
        async with client(first) as api:
            kept = await post(api, agent("kept"))
            since = kept["metadata"]["resourceVersion"]
            await api.patch(f"{BASE}/taskagents/kept", headers=MERGE,
                            json={"metadata": {"labels": {"v": "2"}}})
            after = (await api.get(f"{BASE}/taskagents/kept")).json()
    finally:
        await first.stop()
    second = APIServer(data, watch_history=100)
    await second.start()
    try:
        assert second.token == first.token and second.ca_pem == first.ca_pem
        async with client(second) as api:
            assert (await api.get(f"{BASE}/taskagents/kept")).json() == after
            task = asyncio.create_task(watch_lines(
                api, f"{BASE}/taskagents?watch=true&resourceVersion={since}", 2))
            await post(api, agent("new"))
            events = await task
            assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [
                ("MODIFIED", "kept"), ("ADDED", "new")]
            # Versions keep counting up from where the first run stopped.
            assert int(events[1]["object"]["metadata"]["resourceVersion"]) > int(
                after["metadata"]["resourceVersion"])
            for ns in ("default", "clrk"):
                assert (await api.get(f"/api/v1/namespaces/{ns}")).status_code == 200
    finally:
        await second.stop()


async def test_many_objects_and_watches(server: APIServer) -> None:
    async with client(server, limits=httpx.Limits(max_connections=200)) as api:
        secrets = "/api/v1/namespaces/default/secrets"
        sem = asyncio.Semaphore(20)

        async def make(i: int) -> None:
            async with sem:
                await post(api, {"apiVersion": "v1", "kind": "Secret",
                                 "metadata": {"name": f"s{i:04d}"}, "data": {}}, secrets)

        await asyncio.gather(*(make(i) for i in range(1000)))
        listed = (await api.get(secrets)).json()["items"]
        assert len(listed) == 1000
        rv = (await api.get(secrets, params={"limit": 1})).json()["metadata"][
            "resourceVersion"]
        watches = [asyncio.create_task(watch_lines(
            api, f"{secrets}?watch=true&resourceVersion={rv}&fieldSelector=metadata.name%3Dlast",
            1, limit=60)) for _ in range(100)]
        await asyncio.sleep(0)
        await post(api, {"apiVersion": "v1", "kind": "Secret",
                         "metadata": {"name": "last"}}, secrets)
        for events in await asyncio.gather(*watches):
            assert events[0]["type"] == "ADDED"
            assert events[0]["object"]["metadata"]["name"] == "last"


async def kubectl(kubeconfig: Path, *args: str, stdin: str | None = None
                  ) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        "kubectl", f"--kubeconfig={kubeconfig}", *args,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(stdin.encode() if stdin else None), 60)
    return proc.returncode or 0, out.decode(), err.decode()


async def test_kubectl_smoke(server: APIServer, tmp_path: Path) -> None:
    cfg = tmp_path / "kubeconfig"
    server.write_kubeconfig(cfg)
    manifest = json.dumps(agent("kc"))
    code, out, err = await kubectl(cfg, "apply", "-f", "-", stdin=manifest)
    assert code == 0, err
    code, out, err = await kubectl(cfg, "get", "ta")
    assert code == 0, err
    assert out.split("\n")[0].split()[0] == "NAME" and "kc" in out
    code, out, err = await kubectl(cfg, "get", "taskagent", "kc", "-o",
                                   "jsonpath={.spec.template.spec.image}")
    assert (code, out) == (0, "busybox:1.36"), err
    # kubectl sends built-in kinds as protobuf (and never falls back to JSON).
    code, out, err = await kubectl(cfg, "create", "namespace", "team")
    assert code == 0, err
    code, out, err = await kubectl(cfg, "-n", "team", "create", "secret", "generic", "s",
                                   "--from-literal=k=v", "--type=example.com/kind")
    assert code == 0, err
    code, out, err = await kubectl(cfg, "-n", "team", "get", "secret", "s", "-o", "json")
    secret = json.loads(out)
    assert secret["data"] == {"k": "dg=="} and secret["type"] == "example.com/kind"
    code, out, err = await kubectl(cfg, "get", "ns", "team", "-o", "json")
    assert json.loads(out)["status"]["phase"] == "Active"
    code, out, err = await kubectl(cfg, "get", "ta", "missing")
    assert code != 0 and "not found" in err
    code, out, err = await kubectl(cfg, "delete", "ta", "kc")
    assert code == 0 and "deleted" in out, err


def _pb(number: int, payload: bytes) -> bytes:
    """One length-delimited protobuf field (payloads here are shorter than 128 bytes)."""
    return bytes([number << 3 | 2, len(payload)]) + payload


async def test_protobuf_bodies_other_than_core_kinds_are_refused(api: httpx.AsyncClient
                                                                 ) -> None:
    proto = {"Content-Type": "application/vnd.kubernetes.protobuf"}
    type_meta = _pb(1, b"clrk.apoxy.dev/v1alpha1") + _pb(2, b"TaskAgent")
    body = b"k8s\x00" + _pb(1, type_meta) + _pb(2, _pb(1, _pb(1, b"pb")))
    r = await api.post(f"{BASE}/taskagents", content=body, headers=proto)
    assert r.status_code == 415 and "send JSON" in r.json()["message"]
    r = await api.post("/api/v1/namespaces/default/secrets", content=b"k8s\x00\x0a\xff",
                       headers=proto)
    assert r.status_code == 400 and "protobuf" in r.json()["message"]
    r = await api.post("/api/v1/namespaces/default/secrets", content=b"{}", headers=proto)
    assert r.status_code == 400
