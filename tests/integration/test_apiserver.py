"""The embedded API server over real HTTPS, driven with raw requests."""

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

BASE = "/apis/clrk.apoxy.dev/v1alpha1/namespaces/default"


def agent(name: str, image: str = "busybox:1.36", **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "clrk.apoxy.dev/v1alpha1", "kind": "TaskAgent",
            "metadata": {"name": name},
            "spec": {"template": {"spec": {"image": image}}, **spec}}


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[APIServer]:
    s = APIServer(tmp_path / "data", watch_history=8, bookmark_interval=0.2)
    await s.start()
    try:
        yield s
    finally:
        await s.stop()


@pytest.fixture
async def api(server: APIServer) -> AsyncIterator[httpx.AsyncClient]:
    ctx = ssl.create_default_context(cadata=server.ca_pem.decode())
    async with httpx.AsyncClient(base_url=server.url, verify=ctx, timeout=30,
                                 headers={"Authorization": f"Bearer {server.token}"}) as c:
        yield c


async def create(api: httpx.AsyncClient, obj: dict[str, Any]) -> dict[str, Any]:
    r = await api.post(f"{BASE}/taskagents", json=obj)
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    return body


async def test_stale_resource_version_is_a_conflict(api: httpx.AsyncClient) -> None:
    first = await create(api, agent("stale"))
    first["spec"]["timeout"] = "10s"
    r = await api.put(f"{BASE}/taskagents/stale", json=first)
    assert r.status_code == 200
    first["spec"]["timeout"] = "20s"  # still carries the old resourceVersion
    r = await api.put(f"{BASE}/taskagents/stale", json=first)
    assert r.status_code == 409
    assert r.json()["reason"] == "Conflict"
    r = await api.patch(f"{BASE}/taskagents/stale",
                        json={"metadata": {"resourceVersion": first["metadata"][
                            "resourceVersion"]}, "spec": {"timeout": "5s"}},
                        headers={"Content-Type": "application/merge-patch+json"})
    assert r.status_code == 409


async def test_generation_moves_on_spec_changes_only(api: httpx.AsyncClient) -> None:
    obj = await create(api, agent("gen"))
    assert obj["metadata"]["generation"] == 1
    merge = {"Content-Type": "application/merge-patch+json"}
    r = await api.patch(f"{BASE}/taskagents/gen", headers=merge,
                        json={"metadata": {"labels": {"team": "a"}}})
    assert r.json()["metadata"]["generation"] == 1
    r = await api.patch(f"{BASE}/taskagents/gen/status", headers=merge,
                        json={"status": {"observedGeneration": 1}})
    assert r.json()["metadata"]["generation"] == 1
    r = await api.patch(f"{BASE}/taskagents/gen", headers=merge,
                        json={"spec": {"timeout": "9s"}})
    assert r.json()["metadata"]["generation"] == 2
    # Writing the same spec again is not a change.
    r = await api.patch(f"{BASE}/taskagents/gen", headers=merge,
                        json={"spec": {"timeout": "9s"}})
    assert r.json()["metadata"]["generation"] == 2


async def test_status_and_spec_are_isolated(api: httpx.AsyncClient) -> None:
    await create(api, agent("iso"))
    merge = {"Content-Type": "application/merge-patch+json"}
    r = await api.patch(f"{BASE}/taskagents/iso/status", headers=merge,
                        json={"spec": {"timeout": "1s"},
                              "status": {"latestCreatedRevisionName": "iso-00001"}})
    assert r.status_code == 200
    assert r.json()["spec"]["timeout"] == "100s"
    assert r.json()["status"]["latestCreatedRevisionName"] == "iso-00001"
    r = await api.patch(f"{BASE}/taskagents/iso", headers=merge,
                        json={"spec": {"timeout": "2s"},
                              "status": {"latestCreatedRevisionName": "hijacked"}})
    assert r.json()["spec"]["timeout"] == "2s"
    assert r.json()["status"]["latestCreatedRevisionName"] == "iso-00001"
    # Status given on create is dropped.
    created = await create(api, {**agent("iso2"), "status": {"observedGeneration": 7}})
    assert "status" not in created


async def test_invocations_are_system_written(api: httpx.AsyncClient) -> None:
    r = await api.post(f"{BASE}/invocations", json={
        "apiVersion": "clrk.apoxy.dev/v1alpha1", "kind": "Invocation",
        "metadata": {"name": "x"}, "spec": {"agentKind": "TaskAgent", "agentName": "a"}})
    assert r.status_code == 405
    assert r.json()["reason"] == "MethodNotAllowed"


async def test_strategic_merge_is_415_for_clrk_kinds(api: httpx.AsyncClient) -> None:
    await create(api, agent("smp"))
    smp = {"Content-Type": "application/strategic-merge-patch+json"}
    r = await api.patch(f"{BASE}/taskagents/smp", headers=smp, json={"spec": {}})
    assert r.status_code == 415
    r = await api.post("/api/v1/namespaces/default/secrets", json={
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"},
        "stringData": {"a": "1"}})
    assert r.status_code == 201
    assert r.json()["data"] == {"a": "MQ=="}
    r = await api.patch("/api/v1/namespaces/default/secrets/s", headers=smp,
                        json={"metadata": {"labels": {"x": "y"}}, "data": {"b": "Mg=="}})
    assert r.status_code == 200
    assert r.json()["data"] == {"a": "MQ==", "b": "Mg=="}


async def test_bad_bodies_get_4xx_and_the_server_keeps_serving(api: httpx.AsyncClient) -> None:
    url = f"{BASE}/taskagents"
    r = await api.post(url, content=b'{"apiVersion": ', headers={
        "Content-Type": "application/json"})
    assert r.status_code == 400 and "not valid JSON" in r.json()["message"]
    r = await api.post(url, content=b"kind: [unclosed", headers={
        "Content-Type": "application/yaml"})
    assert r.status_code == 400 and "not valid YAML" in r.json()["message"]
    big = json.dumps({**agent("big"), "x": "a" * (10 * 1024 * 1024)}).encode()
    r = await api.post(url, content=big, headers={"Content-Type": "application/json"})
    assert r.status_code == 413
    deep = b'{"a":' * 10000 + b"1" + b"}" * 10000
    r = await api.post(url, content=deep, headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and "nested" in r.json()["message"]
    deep_yaml = b"a: " + b"[" * 5000 + b"]" * 5000
    r = await api.post(url, content=deep_yaml, headers={"Content-Type": "application/yaml"})
    assert r.status_code == 400
    r = await api.post(url, content=b"[1, 2]", headers={"Content-Type": "application/json"})
    assert r.status_code == 400
    assert (await api.get(url)).status_code == 200
    assert (await create(api, agent("after-bad-input")))["metadata"]["name"]


async def test_validation_errors_name_the_field(api: httpx.AsyncClient) -> None:
    r = await api.post(f"{BASE}/taskagents?fieldValidation=Strict",
                       json={**agent("bad", timeout="-1s"), "extra": 1})
    assert r.status_code == 422
    body = r.json()
    fields = {c["field"] for c in body["details"]["causes"]}
    assert {"spec.timeout", "extra"} <= fields
    assert "spec.timeout" in body["message"]
    # Warn (the default) drops unknown fields with a warning instead.
    r = await api.post(f"{BASE}/taskagents", json={**agent("warned"), "extra": 1})
    assert r.status_code == 201
    assert "extra" not in r.json()
    assert "unknown field" in r.headers["warning"]
    r = await api.post(f"{BASE}/taskagents", json=agent("Not_DNS"))
    assert r.status_code == 422 and "metadata.name" in r.json()["message"]


async def test_missing_namespace_is_404(api: httpx.AsyncClient) -> None:
    r = await api.post("/apis/clrk.apoxy.dev/v1alpha1/namespaces/nope/taskagents",
                       json=agent("x"))
    assert r.status_code == 404


async def _watch(api: httpx.AsyncClient, query: str, until: Any,
                 limit: float = 20) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []

    async def run() -> None:
        async with api.stream("GET", f"{BASE}/taskagents?watch=true&{query}") as r:
            async for line in r.aiter_lines():
                if line.strip():
                    events.append(json.loads(line))
                    if until(events[-1]):
                        return

    await asyncio.wait_for(run(), limit)
    return events


async def test_watch_resume_bookmarks_and_gone(api: httpx.AsyncClient) -> None:
    first = await create(api, agent("w1"))
    rv = first["metadata"]["resourceVersion"]
    merge = {"Content-Type": "application/merge-patch+json"}
    await api.patch(f"{BASE}/taskagents/w1", headers=merge, json={"spec": {"timeout": "3s"}})
    await api.delete(f"{BASE}/taskagents/w1")
    events = await _watch(api, f"resourceVersion={rv}", lambda e: e["type"] == "DELETED")
    assert [e["type"] for e in events] == ["MODIFIED", "DELETED"]
    events = await _watch(api, "allowWatchBookmarks=true&resourceVersion=0",
                          lambda e: e["type"] == "BOOKMARK")
    assert events[-1]["object"]["metadata"]["resourceVersion"]
    # Push the log past its retention (8 events), then resume from the start: 410.
    for i in range(12):
        await create(api, agent(f"churn-{i}"))
    events = await _watch(api, f"resourceVersion={rv}", lambda e: e["type"] == "ERROR")
    assert events[-1]["object"]["code"] == 410
    assert events[-1]["object"]["reason"] == "Expired"


async def test_watch_selector_sees_objects_leave(api: httpx.AsyncClient) -> None:
    obj = await create(api, {**agent("sel"), "metadata": {"name": "sel",
                                                          "labels": {"tier": "a"}}})
    rv = obj["metadata"]["resourceVersion"]
    task = asyncio.create_task(_watch(api, f"labelSelector=tier%3Da&resourceVersion={rv}",
                                      lambda e: e["type"] == "DELETED"))
    await asyncio.sleep(0.2)
    await api.patch(f"{BASE}/taskagents/sel",
                    headers={"Content-Type": "application/merge-patch+json"},
                    json={"metadata": {"labels": {"tier": "b"}}})
    events = await task
    assert events[-1]["type"] == "DELETED"


async def test_list_selectors_and_pages(api: httpx.AsyncClient) -> None:
    for i in range(5):
        await create(api, {**agent(f"l{i}"), "metadata": {
            "name": f"l{i}", "labels": {"parity": "even" if i % 2 == 0 else "odd"}}})
    r = await api.get(f"{BASE}/taskagents", params={"labelSelector": "parity=even"})
    assert [i["metadata"]["name"] for i in r.json()["items"]] == ["l0", "l2", "l4"]
    r = await api.get(f"{BASE}/taskagents", params={"labelSelector": "parity in (odd)"})
    assert len(r.json()["items"]) == 2
    r = await api.get(f"{BASE}/taskagents", params={"fieldSelector": "metadata.name=l3"})
    assert [i["metadata"]["name"] for i in r.json()["items"]] == ["l3"]
    r = await api.get(f"{BASE}/taskagents", params={"fieldSelector": "metadata.name!=l3"})
    assert len(r.json()["items"]) == 4
    names = []
    cont = ""
    while True:
        r = await api.get(f"{BASE}/taskagents", params={"limit": 2, "continue": cont})
        names += [i["metadata"]["name"] for i in r.json()["items"]]
        cont = r.json()["metadata"].get("continue", "")
        if not cont:
            break
    assert names == [f"l{i}" for i in range(5)]
    r = await api.get(f"{BASE}/taskagents", params={"labelSelector": "a in (b"})
    assert r.status_code == 400


async def test_finalizers_and_garbage_collection(api: httpx.AsyncClient) -> None:
    owner = await create(api, {**agent("owner"), "metadata": {
        "name": "owner", "finalizers": ["example.com/hold"]}})
    dependent = {**agent("dependent"), "metadata": {"name": "dependent", "ownerReferences": [{
        "apiVersion": "clrk.apoxy.dev/v1alpha1", "kind": "TaskAgent", "name": "owner",
        "uid": owner["metadata"]["uid"]}]}}
    await create(api, dependent)
    r = await api.delete(f"{BASE}/taskagents/owner")
    assert r.status_code == 200 and r.json()["metadata"]["deletionTimestamp"]
    assert (await api.get(f"{BASE}/taskagents/dependent")).status_code == 200
    merge = {"Content-Type": "application/merge-patch+json"}
    r = await api.patch(f"{BASE}/taskagents/owner", headers=merge,
                        json={"metadata": {"finalizers": ["example.com/hold", "new"]}})
    assert r.status_code == 422
    r = await api.patch(f"{BASE}/taskagents/owner", headers=merge,
                        json={"metadata": {"finalizers": None}})
    assert r.status_code == 200
    assert (await api.get(f"{BASE}/taskagents/owner")).status_code == 404
    assert (await api.get(f"{BASE}/taskagents/dependent")).status_code == 404


async def test_table_output(api: httpx.AsyncClient) -> None:
    await create(api, agent("tbl", image="registry.example.com/x:1"))
    r = await api.get(f"{BASE}/taskagents", headers={
        "Accept": "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"})
    table = r.json()
    assert table["kind"] == "Table"
    names = [c["name"] for c in table["columnDefinitions"]]
    assert names[0] == "Name" and "Image" in names and "Age" in names
    row = table["rows"][0]
    assert row["cells"][0] == "tbl"
    assert "registry.example.com/x:1" in row["cells"]
    assert row["object"]["kind"] == "PartialObjectMetadata"


async def test_server_side_apply_status_and_dry_run(api: httpx.AsyncClient) -> None:
    apply = {"Content-Type": "application/apply-patch+yaml"}
    r = await api.patch(f"{BASE}/taskagents/ssa?fieldManager=me", headers=apply,
                        content=json.dumps(agent("ssa")))
    assert r.status_code == 201
    r = await api.patch(f"{BASE}/taskagents/ssa", headers=apply,
                        content=json.dumps(agent("ssa")))
    assert r.status_code == 400 and "fieldManager" in r.json()["message"]
    r = await api.post(f"{BASE}/taskagents?dryRun=All", json=agent("dry"))
    assert r.status_code == 201
    assert (await api.get(f"{BASE}/taskagents/dry")).status_code == 404


async def test_namespace_deletion_removes_its_objects(api: httpx.AsyncClient) -> None:
    r = await api.post("/api/v1/namespaces", json={
        "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team"}})
    assert r.status_code == 201
    url = "/apis/clrk.apoxy.dev/v1alpha1/namespaces/team/taskagents"
    assert (await api.post(url, json=agent("t"))).status_code == 201
    assert (await api.delete("/api/v1/namespaces/team")).status_code == 200
    assert (await api.get(f"{url}/t")).status_code == 404
    assert (await api.get("/api/v1/namespaces/team")).status_code == 404
    assert (await api.delete("/api/v1/namespaces/default")).status_code == 403


async def test_discovery(api: httpx.AsyncClient) -> None:
    for path in ("/api", "/api/", "/apis", "/apis/clrk.apoxy.dev/",
                 "/apis/clrk.apoxy.dev/v1alpha1", "/api/v1", "/version", "/openapi/v3"):
        assert (await api.get(path)).status_code == 200, path
    r = await api.get("/apis/clrk.apoxy.dev/v1alpha1")
    names = {x["name"] for x in r.json()["resources"]}
    assert {"taskagents", "taskagents/status", "invocations"} <= names
    assert (await api.get("/apis/nope.example.com/v1")).status_code == 404


async def test_bad_watch_parameters_get_a_status(api: httpx.AsyncClient) -> None:
    r = await api.get(f"{BASE}/taskagents?watch=true&resourceVersion=banana")
    assert r.status_code == 400 and "resourceVersion" in r.json()["message"]
