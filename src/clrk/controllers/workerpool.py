"""WorkerPool controller: status from the workers that report to the pool and, on a
cluster, the pool's workload (:mod:`clrk.controllers.worker_workloads`), kept as rendered
and removed with the pool (a finalizer: kube's garbage collector may not run, and owner
references across the aggregated API are only honoured where it does)."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterable, Sequence
from typing import Any, Protocol

from lightkube import ApiError, AsyncClient
from lightkube.resources.apps_v1 import Deployment
from lightkube.resources.core_v1 import Service, ServiceAccount
from lightkube.resources.rbac_authorization_v1 import RoleBinding
from lightkube.types import PatchType

from clrk.api.agents import TaskAgent
from clrk.api.meta import parse_duration
from clrk.api.workerpool import WorkerPool
from clrk.client import get_or_none, resource_class, to_dict
from clrk.controllers import worker_workloads
from clrk.controllers.conditions import set_condition
from clrk.controllers.runtime import Controller, Key, Watch
from clrk.controllers.worker_workloads import FINALIZER, WorkloadSettings, workload_name

FIELD_MANAGER = "clrk-workerpool"
REAPPLY_SECONDS = 60.0  # what was applied is applied again now and then (drift, deletion)


class Named(Protocol):
    name: str
    capacity: int
    warm_sandboxes: int


class WorkerRegistry(Protocol):
    """Where pools learn their ready workers (workers heartbeat here) and daemons a home."""

    def ready_workers(self, namespace: str, pool: str) -> int: ...

    def candidates(self, namespace: str, pool: str) -> Sequence[Named]: ...


class NoWorkers:
    """The registry when no worker reports (e.g. controllers run without a scheduler)."""

    def ready_workers(self, namespace: str, pool: str) -> int:
        return 0

    def candidates(self, namespace: str, pool: str) -> Sequence[Named]:
        return []


async def _set_finalizer(client: AsyncClient, pool: dict[str, Any], present: bool) -> None:
    md = pool["metadata"]
    current = list(md.get("finalizers") or [])
    wanted = [f for f in current if f != FINALIZER] + ([FINALIZER] if present else [])
    if wanted != current:
        # resourceVersion: a concurrent change of the list is retried, never overwritten.
        await client.patch(resource_class(WorkerPool), md["name"], {"metadata": {
            "finalizers": wanted, "resourceVersion": md["resourceVersion"]}},
            namespace=md["namespace"], patch_type=PatchType.MERGE)


async def _grace(client: AsyncClient, ns: str, pool: str) -> int:
    """From the timeouts of the pool's TaskAgents (admission checked them)."""
    timeouts = []
    async for obj in client.list(resource_class(TaskAgent), namespace=ns):
        spec = to_dict(obj)["spec"]
        if spec.get("workerPoolRef") == pool:
            timeouts.append(parse_duration(spec.get("timeout") or "100s").total_seconds())
    return worker_workloads.grace_seconds(timeouts)


async def _remove(client: AsyncClient, pool: dict[str, Any]) -> None:
    """The workload goes with its pool; then the pool may go."""
    ns, name = pool["metadata"]["namespace"], workload_name(pool["metadata"]["name"])
    for kind in (Deployment, Service, RoleBinding, ServiceAccount):
        try:
            await client.delete(kind, name, namespace=ns)
        except ApiError as err:
            if err.status.code != 404:
                raise
    await _set_finalizer(client, pool, False)


def workerpool_controller(client: AsyncClient, registry: WorkerRegistry,
                          concurrency: int,
                          workloads: WorkloadSettings | None = None) -> Controller:
    """``workloads``: on a cluster, each pool's workers run as its Deployment."""
    res = resource_class(WorkerPool)
    applied: dict[Key, tuple[str, float]] = {}  # what was last applied, and when
    # Each pool's termination grace, from its TaskAgents' timeouts: computed again only
    # when one of the namespace's TaskAgents changed (the watch below), not every pass.
    # A grace remembers how many changes of its namespace were seen before its list was
    # read, so a change that lands during the list makes the next pass read it again.
    changes: dict[str, int] = {}  # TaskAgent events seen, by namespace
    graces: dict[Key, tuple[int, int]] = {}  # the grace, and ``changes`` it was read at

    async def by_task_agent(obj: Any) -> Iterable[Key]:
        ns = obj.metadata.namespace or ""
        changes[ns] = changes.get(ns, 0) + 1  # it may have left a pool, or joined one
        pool = (to_dict(obj).get("spec") or {}).get("workerPoolRef")
        return [(ns, pool)] if pool else []

    async def keep_workload(key: Key, pool: dict[str, Any]) -> None:
        assert workloads is not None
        await _set_finalizer(client, pool, True)
        seen = changes.get(key[0], 0)
        cached = graces.get(key)
        if cached is None or cached[1] != seen:
            cached = graces[key] = (await _grace(client, key[0], key[1]), seen)
        objs = worker_workloads.render(pool, workloads, cached[0])
        digest = hashlib.sha256(json.dumps([o.to_dict() for o in objs],
                                           sort_keys=True).encode()).hexdigest()
        last = applied.get(key)
        if last is not None and last[0] == digest \
                and time.monotonic() - last[1] < REAPPLY_SECONDS:
            return
        for obj in objs:
            await client.apply(obj, field_manager=FIELD_MANAGER, force=True)
        applied[key] = digest, time.monotonic()

    async def reconcile(key: Key) -> float | None:
        ns, name = key
        pool = await get_or_none(client, res, name, ns)
        if pool is None:
            applied.pop(key, None)
            graces.pop(key, None)
            return None
        if workloads is not None:
            if pool["metadata"].get("deletionTimestamp"):
                applied.pop(key, None)
                await _remove(client, pool)
                return None
            await keep_workload(key, pool)
        status = dict(pool.get("status") or {})
        gen = pool["metadata"]["generation"]
        ready = registry.ready_workers(ns, name)
        workers = registry.candidates(ns, name)
        capacity = sum(w.capacity for w in workers)
        conds = set_condition(status.get("conditions") or [], "Accepted", True, "Valid",
                              "the spec is valid", gen)
        if ready > 0:
            conds = set_condition(conds, "Ready", True, "WorkersReady",
                                  f"{ready} worker(s) ready", gen)
        else:
            conds = set_condition(conds, "Ready", False, "NoWorkers",
                                  "no worker has registered with this pool", gen)
        new = {**status, "observedGeneration": gen, "replicas": pool["spec"]["replicas"],
               "readyReplicas": ready, "capacity": capacity,
               "warmSandboxes": sum(w.warm_sandboxes for w in workers), "conditions": conds}
        if workloads is not None:
            deploy = await get_or_none(client, Deployment, workload_name(name), ns)
            new["podsReady"] = int(((deploy or {}).get("status") or {})
                                   .get("readyReplicas") or 0)
        if new != status:
            await client.patch(res.Status, name, {"status": new}, namespace=ns,
                               patch_type=PatchType.MERGE)
        # Worker readiness is not a watch event: look again periodically.
        return 2.0

    return Controller(name="workerpool", primary=WorkerPool, reconcile=reconcile,
                      concurrency=concurrency,
                      secondary=[Watch(TaskAgent, by_task_agent)] if workloads else [])
