"""Every object says what is wrong where users look: route and policy status, Warning
events, and no revision left behind by an agent deleted at once (real API server and
controllers, through lightkube)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from lightkube import AsyncClient
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import Event as CoreEvent
from lightkube.resources.core_v1 import Secret

from clrk.api.gateway import EgressGateway
from clrk.api.policies import CredentialInjectionPolicy
from clrk.api.revision import AgentSandboxRevision
from clrk.api.routes import AIProviderRoute
from clrk.apiserver.storage import Key, Store
from clrk.client import resource_class, to_dict
from clrk.controlplane.apiserver import APIServer
from tests.integration.test_controllers import TA, Env, agent, eventually

AIPR = resource_class(AIProviderRoute)
CIP = resource_class(CredentialInjectionPolicy)
EGW = resource_class(EgressGateway)
ASR = resource_class(AgentSandboxRevision)
API_VERSION = "clrk.apoxy.dev/v1alpha1"


def route(name: str, gateway: str, backend: str | None = None) -> Any:
    rule: dict[str, Any] = {"matches": [{"provider": "anthropic"}]}
    if backend:
        rule["backendRefs"] = [{"name": backend}]
    return AIPR.from_dict({"apiVersion": API_VERSION, "kind": "AIProviderRoute",
                           "metadata": {"name": name, "namespace": "default"},
                           "spec": {"parentRefs": [{"name": gateway}], "rules": [rule]}})


def policy(name: str, route_name: str, secret: str) -> Any:
    return CIP.from_dict({
        "apiVersion": API_VERSION, "kind": "CredentialInjectionPolicy",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"targetRef": {"kind": "AIProviderRoute", "name": route_name},
                 "secretRef": {"name": secret}, "secretKey": "api-key",
                 "target": "Header", "headerName": "x-api-key"}})


async def kubectl(env: Env, *args: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        "kubectl", "--kubeconfig", str(env.data / "kubeconfig"), *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    return out.decode()


async def conditions(client: AsyncClient, res: Any, name: str, field: str
                     ) -> dict[str, dict[str, Any]]:
    obj = to_dict(await client.get(res, name, namespace="default"))
    entries = (obj.get("status") or {}).get(field) or []
    return {c["type"]: c for c in (entries[0]["conditions"] if entries else [])}


async def until(client: AsyncClient, res: Any, name: str, field: str, type_: str,
                status: str) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        cond = (await conditions(client, res, name, field)).get(type_)
        return cond if cond and cond["status"] == status else None
    cond = await eventually(check)
    assert cond, (name, type_, status, await conditions(client, res, name, field))
    return dict(cond)


async def warnings(client: AsyncClient, name: str) -> list[str]:
    return [f"{e.reason}: {e.message}" async for e in client.list(CoreEvent, namespace="default")
            if e.type == "Warning" and e.involvedObject.name == name]


async def test_a_route_without_its_gateway_is_not_accepted(env: Env) -> None:
    c = env.client
    await c.create(route("lonely", "nowhere", backend="missing-backend"))
    cond = await until(c, AIPR, "lonely", "parents", "Accepted", "False")
    assert cond["reason"] == "NoMatchingParent"
    assert "EgressGateway default/nowhere does not exist" in cond["message"]
    refs = await until(c, AIPR, "lonely", "parents", "ResolvedRefs", "False")
    assert "Backend missing-backend does not exist" in refs["message"]
    obj = to_dict(await c.get(AIPR, "lonely", namespace="default"))
    parent = obj["status"]["parents"][0]
    assert parent["parentRef"]["name"] == "nowhere"
    assert parent["controllerName"] == "clrk.apoxy.dev/egress-controller"
    assert any("does not exist" in w for w in await eventually(lambda: warnings(c, "lonely")))
    # Where users look: kubectl get's columns and kubectl describe.
    table = await kubectl(env, "get", "aipr", "lonely")
    assert table.splitlines()[0].split() == ["NAME", "GATEWAY", "PROVIDER", "ACCEPTED",
                                             "RESOLVEDREFS", "AGE"]
    assert table.splitlines()[1].split()[3:5] == ["False", "False"]
    described = await kubectl(env, "describe", "aipr", "lonely")
    assert "NoMatchingParent" in described and "Warning" in described
    # The gateway appears: the route is taken, with no new Warning.
    await c.create(EGW.from_dict({"apiVersion": API_VERSION, "kind": "EgressGateway",
                                  "metadata": {"name": "nowhere", "namespace": "default"},
                                  "spec": {}}))
    await until(c, AIPR, "lonely", "parents", "Accepted", "True")


async def test_a_policy_names_its_missing_secret(env: Env) -> None:
    c = env.client
    await c.create(EGW.from_dict({"apiVersion": API_VERSION, "kind": "EgressGateway",
                                  "metadata": {"name": "gw", "namespace": "default"},
                                  "spec": {}}))
    await c.create(route("anthropic", "gw"))
    await c.create(policy("inject", "anthropic", "anthropic-credentials"))
    cond = await until(c, CIP, "inject", "ancestors", "ResolvedRefs", "False")
    assert cond["reason"] == "SecretNotFound"
    assert "anthropic-credentials" in cond["message"]
    assert (await until(c, CIP, "inject", "ancestors", "Accepted", "True"))["reason"] == \
        "Accepted"
    found = await eventually(lambda: warnings(c, "inject"))
    assert any("Secret anthropic-credentials does not exist" in w for w in found)
    # A Secret without the key is named too; with it, all is resolved.
    await c.create(Secret(metadata=ObjectMeta(name="anthropic-credentials",
                                              namespace="default"),
                          data={"other": "eA=="}))
    cond = await until(c, CIP, "inject", "ancestors", "ResolvedRefs", "False")
    await eventually(lambda: _reason(c, "SecretKeyNotFound"))
    await c.patch(Secret, "anthropic-credentials", {"data": {"api-key": "c2s="}},
                  namespace="default")
    await until(c, CIP, "inject", "ancestors", "ResolvedRefs", "True")
    # A policy whose route is missing is not accepted.
    await c.create(policy("orphan", "no-such-route", "anthropic-credentials"))
    cond = await until(c, CIP, "orphan", "ancestors", "Accepted", "False")
    assert cond["reason"] == "TargetNotFound"
    assert "AIProviderRoute default/no-such-route does not exist" in cond["message"]


async def _reason(c: AsyncClient, reason: str) -> bool:
    found = (await conditions(c, CIP, "inject", "ancestors"))["ResolvedRefs"]
    return bool(found["reason"] == reason)


async def test_agents_warn_of_their_false_conditions(env: Env) -> None:
    c = env.client
    await c.create(agent("poolless", workerPoolRef="no-pool"))
    found = await eventually(lambda: warnings(c, "poolless"))
    assert any(w.startswith("WorkerPoolNotFound: WorkerPoolReady:") for w in found), found
    await asyncio.sleep(1)  # further reconciles do not repeat it
    assert len([w for w in await warnings(c, "poolless")
                if w.startswith("WorkerPoolNotFound")]) == 1


async def test_an_agent_deleted_at_once_leaves_no_revision(env: Env) -> None:
    c = env.client
    for i in range(5):
        await c.create(agent(f"brief-{i}"))
        await asyncio.sleep(0.05 * i)
        await c.delete(TA, f"brief-{i}", namespace="default")

    async def none_left() -> bool:
        return not [r async for r in c.list(ASR, namespace="default")]
    await asyncio.sleep(1)
    assert await eventually(none_left)


async def test_a_dependent_whose_owner_is_gone_is_collected(tmp_path: Path) -> None:
    """Created after its owner's deletion: deleted at once, and at the next start if it
    was left by a crash."""
    plane = Env(tmp_path / "data")
    await plane.start(controllers=False)
    c = plane.client
    owner = {"apiVersion": API_VERSION, "kind": "TaskAgent", "name": "gone",
             "uid": "00000000-0000-0000-0000-000000000001"}
    body: dict[str, Any] = {"apiVersion": API_VERSION, "kind": "AgentSandboxRevision",
                            "metadata": {"name": "gone-00001", "namespace": "default",
                                         "ownerReferences": [owner]},
                            "spec": {"agentKind": "TaskAgent", "agentName": "gone",
                                     "generation": 1,
                                     "template": {"spec": {"image": "busybox:1.36"}}}}
    await c.create(ASR.from_dict(body))
    assert not [r async for r in c.list(ASR, namespace="default")]
    await plane.close()
    # Left behind by a crash: written straight into the store.
    store = Store(tmp_path / "data" / "state.db")
    ok = dict(body, metadata={**body["metadata"], "uid": "u1", "name": "left-00001"})
    store.put(Key("clrk.apoxy.dev", "agentsandboxrevisions", "default", "left-00001"), ok,
              "ADDED")
    store.close()
    server = APIServer(tmp_path / "data")
    await server.start()
    try:
        assert server.store.get(Key("clrk.apoxy.dev", "agentsandboxrevisions", "default",
                                    "left-00001")) is None
    finally:
        await server.stop()
