"""The controllers against the real embedded API server, through lightkube."""

from __future__ import annotations

import asyncio
import base64
import contextlib
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from lightkube import AsyncClient, KubeConfig
from lightkube.resources.core_v1 import Event as CoreEvent
from lightkube.resources.core_v1 import Secret
from lightkube.types import PatchType

from clrk.api.agents import TaskAgent
from clrk.api.gateway import EgressGateway
from clrk.api.revision import AgentSandboxRevision
from clrk.api.workerpool import WorkerPool
from clrk.client import resource_class, to_dict
from clrk.controllers.manager import ControllerManager
from clrk.controlplane.apiserver import APIServer

TA = resource_class(TaskAgent)
ASR = resource_class(AgentSandboxRevision)
EGW = resource_class(EgressGateway)
WP = resource_class(WorkerPool)


async def eventually(fn: Callable[[], Awaitable[Any]], timeout: float = 30) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = await fn()
        if value or asyncio.get_running_loop().time() > deadline:
            return value
        await asyncio.sleep(0.1)


class Env:
    def __init__(self, data: Path) -> None:
        self.data = data
        self.server = APIServer(data)
        self.stop = asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        self.client: AsyncClient

    async def start(self, controllers: bool = True) -> None:
        await self.server.start()
        self.server.write_kubeconfig(self.data / "kubeconfig")
        self.client = AsyncClient(config=KubeConfig.from_file(str(self.data / "kubeconfig")))
        if controllers:
            self.start_controllers()

    def start_controllers(self) -> None:
        self.stop = asyncio.Event()
        self.task = asyncio.create_task(ControllerManager(self.client).run(self.stop))

    async def stop_controllers(self) -> None:
        self.stop.set()
        if self.task:
            with contextlib.suppress(Exception):
                await self.task

    async def close(self) -> None:
        await self.stop_controllers()
        await self.client.close()
        await self.server.stop()


def agent(name: str, image: str = "busybox:1.36", **spec: Any) -> Any:
    return TA.from_dict({"apiVersion": "clrk.apoxy.dev/v1alpha1", "kind": "TaskAgent",
                         "metadata": {"name": name, "namespace": "default"},
                         "spec": {"template": {"spec": {"image": image}}, **spec}})


async def revision_names(client: AsyncClient, agent_name: str) -> list[str]:
    return sorted([r.metadata.name async for r in client.list(
        ASR, namespace="default", labels={"clrk.apoxy.dev/agent": agent_name})])


async def test_revisions_follow_the_template(env: Env) -> None:
    c = env.client
    await c.create(agent("word-count"))
    assert await eventually(lambda: _eq(revision_names(c, "word-count"),
                                        ["word-count-00001"]))
    rev = to_dict(await c.get(ASR, "word-count-00001", namespace="default"))
    assert rev["spec"]["agentName"] == "word-count"
    assert rev["spec"]["generation"] == 1
    assert rev["metadata"]["ownerReferences"][0]["kind"] == "TaskAgent"
    await c.patch(TA, "word-count", {"spec": {"template": {"spec": {"image": "busybox:1.37"}}}},
                  namespace="default", patch_type=PatchType.MERGE)
    both = ["word-count-00001", "word-count-00002"]
    assert await eventually(lambda: _eq(revision_names(c, "word-count"), both))
    await c.patch(TA, "word-count", {"spec": {"timeout": "5s"}}, namespace="default",
                  patch_type=PatchType.MERGE)

    async def observed() -> bool:
        obj = to_dict(await c.get(TA, "word-count", namespace="default"))
        return bool((obj.get("status") or {}).get("observedGeneration") == 3)

    assert await eventually(observed)
    assert await revision_names(c, "word-count") == both
    status = to_dict(await c.get(TA, "word-count", namespace="default"))["status"]
    assert status["latestCreatedRevisionName"] == "word-count-00002"
    conds = {x["type"]: x for x in status["conditions"]}
    assert conds["Accepted"]["status"] == "True"
    assert conds["WorkerPoolReady"]["reason"] == "WorkerPoolNotFound"
    assert conds["EgressConfigured"]["reason"] == "NoEgress"
    assert all(x["observedGeneration"] == 3 for x in conds.values())
    events = [e async for e in c.list(CoreEvent, namespace="default")]
    assert any(e.reason == "RevisionCreated" for e in events)


async def _eq(coro: Awaitable[Any], want: Any) -> bool:
    return bool(await coro == want)


async def test_revisions_are_pruned_to_ten(env: Env) -> None:
    c = env.client
    await c.create(agent("churn", image="busybox:1"))
    assert await eventually(lambda: _eq(revision_names(c, "churn"), ["churn-00001"]))
    for i in range(2, 14):
        await c.patch(TA, "churn", {"spec": {"template": {"spec": {"image": f"busybox:{i}"}}}},
                      namespace="default", patch_type=PatchType.MERGE)
        want = f"churn-{i:05d}"
        assert await eventually(lambda w=want: _contains(revision_names(c, "churn"), w))  # type: ignore[misc]
    names = await eventually(lambda: _len(revision_names(c, "churn"), 10))
    assert names
    assert await revision_names(c, "churn") == [f"churn-{i:05d}" for i in range(4, 14)]


async def _contains(coro: Awaitable[list[str]], want: str) -> bool:
    return want in await coro


async def _len(coro: Awaitable[list[str]], n: int) -> bool:
    return len(await coro) == n


async def test_conditions_follow_pools_and_gateways(env: Env) -> None:
    c = env.client
    await c.create(agent("wired", egressRefs=[{"gatewayRef": "gw"}]))

    async def cond(type_: str, reason: str) -> bool:
        obj = to_dict(await c.get(TA, "wired", namespace="default"))
        conds = {x["type"]: x for x in (obj.get("status") or {}).get("conditions") or []}
        return bool(conds.get(type_, {}).get("reason") == reason)

    assert await eventually(lambda: cond("EgressConfigured", "GatewayNotFound"))
    await c.create(EGW.from_dict({"apiVersion": "clrk.apoxy.dev/v1alpha1",
                                  "kind": "EgressGateway",
                                  "metadata": {"name": "gw", "namespace": "default"},
                                  "spec": {}}))
    assert await eventually(lambda: cond("EgressConfigured", "GatewaysFound"))
    await c.create(WP.from_dict({"apiVersion": "clrk.apoxy.dev/v1alpha1", "kind": "WorkerPool",
                                 "metadata": {"name": "default", "namespace": "default"},
                                 "spec": {}}))
    assert await eventually(lambda: cond("WorkerPoolReady", "WorkerPoolNotReady"))
    pool = to_dict(await c.get(WP, "default", namespace="default"))
    assert pool["status"]["readyReplicas"] == 0


async def test_gateway_ca_is_created_once_and_never_rotated(env: Env) -> None:
    c = env.client
    await c.create(EGW.from_dict({"apiVersion": "clrk.apoxy.dev/v1alpha1",
                                  "kind": "EgressGateway",
                                  "metadata": {"name": "team", "namespace": "default"},
                                  "spec": {}}))

    async def secret() -> Any:
        try:
            return await c.get(Secret, "clrk-egressgateway-ca-team", namespace="default")
        except Exception:
            return None

    first = await eventually(secret)
    assert first is not None and first.type == "kubernetes.io/tls"
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec

    cert = x509.load_pem_x509_certificate(base64.b64decode(first.data["tls.crt"]))
    key = cert.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey)
    assert key.curve.name == "secp256r1"
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert lifetime.days >= 3649

    async def ca_ready() -> bool:
        gw = to_dict(await c.get(EGW, "team", namespace="default"))
        conds = {x["type"]: x for x in (gw.get("status") or {}).get("conditions") or []}
        return bool(conds.get("CAReady", {}).get("status") == "True"
                    and gw["status"].get("caSecretName") == "clrk-egressgateway-ca-team")

    assert await eventually(ca_ready)
    # Restart the controllers, re-create the gateway: the CA stays the same.
    await env.stop_controllers()
    await c.delete(EGW, "team", namespace="default")
    await c.create(EGW.from_dict({"apiVersion": "clrk.apoxy.dev/v1alpha1",
                                  "kind": "EgressGateway",
                                  "metadata": {"name": "team", "namespace": "default"},
                                  "spec": {}}))
    env.start_controllers()
    assert await eventually(ca_ready)
    again = await secret()
    assert again.data == first.data
    assert again.metadata.resourceVersion == first.metadata.resourceVersion
    # A broken CA is reported, not silently replaced.
    await c.patch(Secret, "clrk-egressgateway-ca-team", {"data": {"tls.crt": "AAAA"}},
                  namespace="default", patch_type=PatchType.MERGE)

    async def invalid() -> bool:
        gw = to_dict(await c.get(EGW, "team", namespace="default"))
        conds = {x["type"]: x for x in (gw.get("status") or {}).get("conditions") or []}
        return bool(conds.get("CAReady", {}).get("reason") == "InvalidCASecret")

    assert await eventually(invalid)
    assert (await secret()).data["tls.crt"] == "AAAA"
