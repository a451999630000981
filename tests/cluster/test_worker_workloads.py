"""On a cluster a WorkerPool becomes its workers' Deployment, headless Service and
ServiceAccount (bound in the pool's namespace to the worker ClusterRole), built from the
pool's template, following its replicas, and gone with it."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import pytest

from tests.cluster.conftest import ClrkOnKube
from tests.cluster.test_install import KUBE_VERSION

pytestmark = pytest.mark.cluster
NS = "pools"
LABEL = "clrk.apoxy.dev/workerpool"
AFFINITY = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
    "nodeSelectorTerms": [{"matchExpressions": [
        {"key": "kubernetes.io/arch", "operator": "In", "values": ["amd64"]}]}]}}}
POOL = {"apiVersion": "clrk.apoxy.dev/v1alpha1", "kind": "WorkerPool",
        "metadata": {"name": "sandboxes", "namespace": NS},
        "spec": {"replicas": 2, "template": {
            "image": "registry.example.com/clrk-worker:test", "imagePullPolicy": "Always",
            "imagePullSecrets": [{"name": "regcred"}],
            "resources": {"limits": {"cpu": "2", "memory": "4Gi"},
                          "requests": {"cpu": "500m", "memory": "1Gi"}},
            "env": [{"name": "CLRK_DNS_UPSTREAM", "value": "10.96.0.10:53"}],
            "nodeSelector": {"clrk.apoxy.dev/sandboxes": "true"},
            "tolerations": [{"key": "sandboxes", "operator": "Exists",
                             "effect": "NoSchedule"}],
            "affinity": AFFINITY}}}
SLOW = {"apiVersion": "clrk.apoxy.dev/v1alpha1", "kind": "TaskAgent",
        "metadata": {"name": "slow", "namespace": NS},
        "spec": {"workerPoolRef": "sandboxes", "timeout": "300s",
                 "template": {"spec": {"image": "registry.example.com/slow:1"}}}}


def _get(c: ClrkOnKube, kind: str, name: str) -> dict[str, Any] | None:
    r = c.cluster.kubectl("get", kind, name, "-n", NS, "-o", "json", check=False)
    return json.loads(r.stdout) if r.returncode == 0 else None


def _until(check: Callable[[], Any], what: str, timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while not (got := check()):
        assert time.monotonic() < deadline, what
        time.sleep(0.3)
    return got


def test_a_pool_becomes_its_workers_workload(clrk_on_kube: ClrkOnKube) -> None:
    c = clrk_on_kube
    c.cluster.kubectl("create", "namespace", NS)
    c.cluster.kubectl("apply", "-f", "-", input=json.dumps(
        {"apiVersion": "v1", "kind": "List", "items": [POOL, SLOW]}))
    # The pool and its TaskAgent arrive together: the Deployment may first be rendered
    # before the controller has seen the TaskAgent, then again with its timeout.
    deploy = _until(lambda: (d := _get(c, "deployment", "sandboxes-workers")) and d["spec"][
        "template"]["spec"]["terminationGracePeriodSeconds"] == 315 and d,
        "no Deployment with the grace of slow's 300 s timeout")
    pool = _get(c, "workerpool", "sandboxes")
    assert pool is not None and "clrk.apoxy.dev/worker-workload" in \
        pool["metadata"]["finalizers"]
    owner = deploy["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"], owner["uid"], owner["controller"]) == (
        "WorkerPool", "sandboxes", pool["metadata"]["uid"], True)
    spec = deploy["spec"]
    assert spec["replicas"] == 2
    assert spec["selector"]["matchLabels"] == {LABEL: "sandboxes"}
    pod = spec["template"]["spec"]
    assert spec["template"]["metadata"]["labels"][LABEL] == "sandboxes"
    assert pod["serviceAccountName"] == "sandboxes-workers"
    assert pod["imagePullSecrets"] == [{"name": "regcred"}]
    assert pod["nodeSelector"] == {"clrk.apoxy.dev/sandboxes": "true"}
    assert pod["tolerations"] == POOL["spec"]["template"]["tolerations"]  # type: ignore[index]
    assert pod["affinity"] == AFFINITY
    assert pod["terminationGracePeriodSeconds"] == 315  # slow's 300 s and the drain margin
    [worker] = pod["containers"]
    assert worker["image"] == "registry.example.com/clrk-worker:test"
    assert worker["imagePullPolicy"] == "Always"
    assert worker["resources"] == {"limits": {"cpu": "2", "memory": "4Gi"},
                                   "requests": {"cpu": "500m", "memory": "1Gi"}}
    assert {"name": "CLRK_DNS_UPSTREAM", "value": "10.96.0.10:53"} in worker["env"]
    assert "--pool=sandboxes" in worker["args"] and f"--pool-namespace={NS}" in worker["args"]
    security = worker["securityContext"]
    assert security["privileged"] is True
    assert security["seccompProfile"] == {"type": "Unconfined"}
    assert security["appArmorProfile"] == {"type": "Unconfined"}
    assert worker["ports"][0]["containerPort"] == 7070
    assert worker["readinessProbe"]["httpGet"]["path"] == "/healthz"
    assert worker["livenessProbe"]["httpGet"]["path"] == "/healthz"
    service = _get(c, "service", "sandboxes-workers")
    assert service is not None and service["spec"]["clusterIP"] == "None"
    assert service["spec"]["selector"] == {LABEL: "sandboxes"}
    binding = _get(c, "rolebinding", "sandboxes-workers")
    assert binding is not None and binding["roleRef"]["name"] == "clrk-worker"
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "sandboxes-workers",
                                    "namespace": NS}]
    assert _get(c, "serviceaccount", "sandboxes-workers") is not None
    for doc in (deploy, service, binding):
        kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)
    # The pool's status reads the Deployment (no kubelet here: no pod is ever ready).
    _until(lambda: ((_get(c, "workerpool", "sandboxes") or {}).get("status") or {})
           .get("podsReady") == 0, "no podsReady in the pool's status")

    # replicas followed
    c.cluster.kubectl("patch", "workerpool", "sandboxes", "-n", NS, "--type=merge",
                      "-p", '{"spec":{"replicas":3}}')
    _until(lambda: (_get(c, "deployment", "sandboxes-workers") or {})["spec"]["replicas"]
           == 3, "the Deployment did not follow replicas")

    # gone with the pool
    c.cluster.kubectl("delete", "workerpool", "sandboxes", "-n", NS, "--wait=false")
    for kind, name in (("deployment", "sandboxes-workers"), ("service", "sandboxes-workers"),
                       ("rolebinding", "sandboxes-workers"),
                       ("serviceaccount", "sandboxes-workers"), ("workerpool", "sandboxes")):
        _until(lambda: _get(c, kind, name) is None,  # noqa: B023 (called at once)
               f"{kind} left after the pool's deletion")
