"""A WorkerPool's workload as rendered for a cluster: valid Kubernetes objects, the
pool's template on the pod, and a grace period that lets the longest execution finish."""

from __future__ import annotations

from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]

from clrk.controllers.worker_workloads import (
    WorkloadSettings,
    grace_seconds,
    render,
)

SETTINGS = WorkloadSettings("ghcr.io/apoxy-dev/clrk-worker:v9.9.9")


def _pool(**template: Any) -> dict[str, Any]:
    return {"metadata": {"name": "p", "namespace": "team", "uid": "u-1"},
            "spec": {"replicas": 4, "template": template}}


def test_every_object_validates_and_is_owned_by_the_pool() -> None:
    objs = [o.to_dict() for o in render(_pool(), SETTINGS, 30)]
    assert [(o["kind"], o["metadata"]["name"]) for o in objs] == [
        ("ServiceAccount", "p-workers"), ("RoleBinding", "p-workers"),
        ("Service", "p-workers"), ("Deployment", "p-workers")]
    for obj in objs:
        kubernetes_validate.validate(obj, "1.32", strict=True)
        assert obj["metadata"]["ownerReferences"] == [{
            "apiVersion": "clrk.apoxy.dev/v1alpha1", "kind": "WorkerPool", "name": "p",
            "uid": "u-1", "controller": True}]
        assert obj["metadata"]["labels"]["clrk.apoxy.dev/workerpool"] == "p"


def test_a_pool_without_an_image_runs_the_controller_managers_version() -> None:
    deploy = render(_pool(), SETTINGS, 30)[-1].to_dict()
    [worker] = deploy["spec"]["template"]["spec"]["containers"]
    assert worker["image"] == SETTINGS.default_image and "imagePullPolicy" not in worker
    assert "resources" not in worker
    assert {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}} \
        in worker["env"]
    assert "--host=$(POD_IP)" in worker["args"] and "--name=$(POD_NAME)" in worker["args"]
    assert deploy["spec"]["replicas"] == 4


def test_an_agents_pids_limit_is_not_the_worker_pods() -> None:
    deploy = render(_pool(resources={"limits": {"cpu": "1", "memory": "1Gi", "pids": 64}}),
                    SETTINGS, 30)[-1].to_dict()
    [worker] = deploy["spec"]["template"]["spec"]["containers"]
    assert worker["resources"] == {"limits": {"cpu": "1", "memory": "1Gi"}}


def test_the_grace_period_covers_the_longest_timeout_within_bounds() -> None:
    assert grace_seconds([]) == 30
    assert grace_seconds([60.0, 100.0]) == 115
    assert grace_seconds([86400.0]) == 3600
