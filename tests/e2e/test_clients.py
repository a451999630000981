"""lightkube, kubernetes_asyncio and a kopf operator against `clrk dev`."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from kubernetes_asyncio import client as k8s_client
from kubernetes_asyncio import config as k8s_config
from kubernetes_asyncio import watch as k8s_watch
from lightkube import ApiError, AsyncClient, KubeConfig
from lightkube.generic_resource import create_namespaced_resource
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import Secret
from lightkube.types import PatchType

from tests.conftest import DevServer

pytestmark = pytest.mark.e2e

TaskAgent = create_namespaced_resource("clrk.apoxy.dev", "v1alpha1", "TaskAgent", "taskagents")


def _agent(name: str, image: str = "busybox:1.36", timeout: str = "60s") -> Any:
    return TaskAgent(
        metadata=ObjectMeta(name=name, namespace="default"),
        spec={"timeout": timeout, "template": {"spec": {"image": image}}},
    )


async def test_lightkube(shared_dev_server: DevServer) -> None:
    config = KubeConfig.from_file(str(shared_dev_server.kubeconfig))
    client = AsyncClient(config=config)
    try:
        created = await client.create(_agent("lk"))
        assert created.metadata is not None
        assert created.metadata.generation == 1
        assert created.spec["timeout"] == "60s"
        got = await client.get(TaskAgent, "lk", namespace="default")
        assert got.metadata is not None
        assert got.metadata.uid == created.metadata.uid
        names = [o.metadata.name async for o in client.list(TaskAgent, namespace="default")
                 if o.metadata is not None]
        assert "lk" in names

        # Watch from the current version sees a merge patch.
        rv = got.metadata.resourceVersion
        events: list[tuple[str, Any]] = []

        async def watch() -> None:
            async for kind, obj in client.watch(TaskAgent, namespace="default",
                                                 resource_version=rv):
                events.append((kind, obj))
                if kind == "MODIFIED" and obj.metadata is not None and \
                        obj.metadata.name == "lk" and \
                        obj.spec["timeout"] == "30s":
                    return

        task = asyncio.create_task(watch())
        await asyncio.sleep(0.2)
        patched = await client.patch(TaskAgent, "lk", {"spec": {"timeout": "30s"}},
                                     namespace="default", patch_type=PatchType.MERGE)
        assert patched.spec["timeout"] == "30s"
        assert patched.metadata is not None and patched.metadata.generation == 2
        await asyncio.wait_for(task, 30)
        assert events[-1][1].spec["timeout"] == "30s"

        # Server-side apply: a second manager conflicts, force takes ownership.
        applied = await client.apply(_agent("lk-ssa"), field_manager="alice")
        assert applied.spec["timeout"] == "60s"
        with pytest.raises(ApiError) as err:
            await client.apply(_agent("lk-ssa", timeout="10s"), field_manager="bob")
        assert err.value.status.code == 409
        assert "timeout" in (err.value.status.message or "")
        forced = await client.apply(_agent("lk-ssa", timeout="10s"), field_manager="bob",
                                    force=True)
        assert forced.spec["timeout"] == "10s"
        managers = {m.manager for m in forced.metadata.managedFields}
        assert {"alice", "bob"} <= managers

        # Core kinds work too.
        await client.create(Secret(metadata=ObjectMeta(name="lk-secret", namespace="default"),
                                   stringData={"api-key": "s3cret"}))
        secret = await client.get(Secret, "lk-secret", namespace="default")
        assert secret.data == {"api-key": "czNjcmV0"}

        await client.delete(TaskAgent, "lk", namespace="default")
        with pytest.raises(ApiError) as err:
            await client.get(TaskAgent, "lk", namespace="default")
        assert err.value.status.code == 404
    finally:
        await client.close()


async def test_kubernetes_asyncio(shared_dev_server: DevServer) -> None:
    await k8s_config.load_kube_config(config_file=str(shared_dev_server.kubeconfig))
    async with k8s_client.ApiClient() as api:
        custom = k8s_client.CustomObjectsApi(api)
        body = {
            "apiVersion": "clrk.apoxy.dev/v1alpha1",
            "kind": "TaskAgent",
            "metadata": {"name": "ka"},
            "spec": {"template": {"spec": {"image": "busybox:1.36"}}},
        }
        created = await custom.create_namespaced_custom_object(
            "clrk.apoxy.dev", "v1alpha1", "default", "taskagents", body)
        assert created["spec"]["timeout"] == "100s"  # the default
        listed = await custom.list_namespaced_custom_object(
            "clrk.apoxy.dev", "v1alpha1", "default", "taskagents")
        assert "ka" in [i["metadata"]["name"] for i in listed["items"]]

        seen: list[str] = []

        async def watch() -> None:
            w = k8s_watch.Watch()
            async with w.stream(custom.list_namespaced_custom_object, "clrk.apoxy.dev",
                                "v1alpha1", "default", "taskagents",
                                resource_version=listed["metadata"]["resourceVersion"],
                                timeout_seconds=30) as stream:
                async for event in stream:
                    seen.append(event["type"])
                    obj = event["object"]
                    if event["type"] == "MODIFIED" and obj["metadata"]["name"] == "ka" \
                            and obj["spec"]["timeout"] == "5s":
                        return

        task = asyncio.create_task(watch())
        await asyncio.sleep(0.2)
        patched = await custom.patch_namespaced_custom_object(
            "clrk.apoxy.dev", "v1alpha1", "default", "taskagents", "ka",
            {"spec": {"timeout": "5s"}}, _content_type="application/merge-patch+json")
        assert patched["spec"]["timeout"] == "5s"
        await asyncio.wait_for(task, 30)
        assert "MODIFIED" in seen

        core = k8s_client.CoreV1Api(api)
        namespaces = await core.list_namespace()
        assert "default" in [n.metadata.name for n in namespaces.items]
        await custom.delete_namespaced_custom_object(
            "clrk.apoxy.dev", "v1alpha1", "default", "taskagents", "ka")


OPERATOR = textwrap.dedent('''
    import kopf

    @kopf.on.startup()
    def configure(settings: kopf.OperatorSettings, **_):
        settings.peering.standalone = True
        settings.posting.level = 0

    @kopf.on.create("clrk.apoxy.dev", "v1alpha1", "taskagents")
    def created(name, patch, **_):
        patch.metadata.setdefault("annotations", {})["kopf-test/seen"] = name
''')


def test_kopf_operator(shared_dev_server: DevServer, tmp_path: Path) -> None:
    op = tmp_path / "operator.py"
    op.write_text(OPERATOR)
    log = tmp_path / "kopf.log"
    kopf_bin = str(Path(sys.executable).parent / "kopf")
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [kopf_bin, "run", "--standalone", "--namespace", "default", str(op)],
            stdout=out, stderr=subprocess.STDOUT,
            env={**os.environ, "KUBECONFIG": str(shared_dev_server.kubeconfig)},
        )
    try:
        shared_dev_server.kubectl("apply", "-f", "-", input=textwrap.dedent("""\
            apiVersion: clrk.apoxy.dev/v1alpha1
            kind: TaskAgent
            metadata: {name: kopf-target}
            spec: {template: {spec: {image: busybox:1.36}}}
            """))
        seen = ""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            seen = shared_dev_server.kubectl(
                "get", "ta", "kopf-target",
                "-o", r"jsonpath={.metadata.annotations.kopf-test/seen}").stdout
            if seen:
                break
            time.sleep(0.3)
        assert seen == "kopf-target", log.read_text()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
