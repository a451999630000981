"""A worker as its pod would run it (tests/worker_pods.py): it registers through
kube-apiserver with its projected ServiceAccount token, takes an execution invoked
through kube-apiserver, and refuses dispatch without its token."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator

import httpx
import pytest

from tests.clrk_on_kube import clrk
from tests.cluster.conftest import ClrkOnKube
from tests.images import Registry, build, busybox_recipe
from tests.worker_pods import (
    NS,
    POOL,
    SA_MOUNT,
    WorkerPod,
    get,
    mount_point,
    ready_workers,
    start_worker_pod,
    until,
)

pytestmark = pytest.mark.cluster
API = "/apis/clrk.apoxy.dev/v1alpha1"


@pytest.fixture(scope="module")
def worker_pod(clrk_on_kube: ClrkOnKube, registry: Registry,
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerPod]:
    cluster = clrk_on_kube.cluster
    with mount_point():
        worker = start_worker_pod(cluster, "default-workers-7d9f-abcde",
                                  tmp_path_factory.mktemp("worker-pod"), registry)
        try:
            until(lambda: ready_workers(cluster) >= 1 or worker.proc.poll() is not None,
                  "the worker pod never registered")
            assert worker.proc.poll() is None, worker.log_text()[-3000:]
            yield worker
        finally:
            worker.stop()


def test_the_worker_registers_through_kube_apiserver(clrk_on_kube: ClrkOnKube,
                                                     worker_pod: WorkerPod) -> None:
    assert worker_pod.proc.poll() is None
    assert ready_workers(clrk_on_kube.cluster) == 1
    pool = get(clrk_on_kube.cluster, "workerpool", POOL, "-n", NS)
    assert pool["status"]["capacity"] > 0, pool["status"]
    # It reached kube-apiserver with the projected token: the heartbeat's audit trail is
    # the worker's own log, which names no other server.
    assert "heartbeat refused" not in worker_pod.log_text()
    assert not SA_MOUNT.joinpath("token").exists()  # the host's path stayed empty


def test_dispatch_needs_the_workers_token(worker_pod: WorkerPod) -> None:
    assert httpx.get(f"{worker_pod.url}/healthz", timeout=10).status_code == 200
    for headers in ({}, {"Authorization": "Bearer not-the-token"}):
        r = httpx.post(f"{worker_pod.url}/v1/executions", json={}, headers=headers,
                       timeout=10)
        assert r.status_code == 401, (r.status_code, r.text)


def test_an_invocation_through_kube_apiserver_runs_on_the_pod(
        clrk_on_kube: ClrkOnKube, worker_pod: WorkerPod, registry: Registry) -> None:
    c = clrk_on_kube
    registry.push("test/shell", "1", build(busybox_recipe(Entrypoint=["/bin/sh", "-c"])))
    agent = {"apiVersion": "clrk.apoxy.dev/v1alpha1", "kind": "TaskAgent",
             "metadata": {"name": "pod-echo", "namespace": NS},
             "spec": {"workerPoolRef": POOL, "timeout": "120s", "template": {"spec": {
                 "image": f"{registry.host}/test/shell:1",
                 "command": ["/bin/sh", "-c", "echo from $HOSTNAME; cat"]}}}}
    c.cluster.kubectl("apply", "-f", "-", input=json.dumps(agent))
    until(lambda: ((get(c.cluster, "taskagent", "pod-echo", "-n", NS) or {}).get("status") or {})
           .get("latestReadyRevisionName"), "pod-echo has no ready revision")
    r = c.cluster.kubectl("create", "--raw", f"{API}/namespaces/{NS}/taskagents/pod-echo/"
                          "invoke", "-f", "-", input='{"hello": "pod"}', timeout=180)
    first, envelope = r.stdout.split("\n", 1)
    assert first == "from sandbox", r.stdout
    event = json.loads(envelope)
    assert event["source"] == "clrk://default/pod-echo", event
    assert base64.b64decode(event["data_base64"]) == b'{"hello": "pod"}', event
    invocations = get(c.cluster, "invocations", "-n", NS, "-l",
                       "clrk.apoxy.dev/agent=pod-echo")["items"]
    [inv] = invocations
    assert inv["status"]["phase"] == "Succeeded", inv["status"]
    assert inv["status"].get("worker") == worker_pod.name, inv["status"]
    logs = clrk("-n", NS, "agents", "logs", "pod-echo", kubeconfig=c.admin)
    assert "from " in logs.stdout, logs.stdout
