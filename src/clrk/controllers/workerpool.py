"""WorkerPool controller: status from the workers that report to the pool."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from lightkube import AsyncClient
from lightkube.types import PatchType

from clrk.api.workerpool import WorkerPool
from clrk.client import get_or_none, resource_class
from clrk.controllers.conditions import set_condition
from clrk.controllers.runtime import Controller, Key


class Named(Protocol):
    name: str
    capacity: int


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


def workerpool_controller(client: AsyncClient, registry: WorkerRegistry,
                          concurrency: int) -> Controller:
    res = resource_class(WorkerPool)

    async def reconcile(key: Key) -> float | None:
        ns, name = key
        pool = await get_or_none(client, res, name, ns)
        if pool is None:
            return None
        status = dict(pool.get("status") or {})
        gen = pool["metadata"]["generation"]
        ready = registry.ready_workers(ns, name)
        capacity = sum(w.capacity for w in registry.candidates(ns, name))
        conds = set_condition(status.get("conditions") or [], "Accepted", True, "Valid",
                              "the spec is valid", gen)
        if ready > 0:
            conds = set_condition(conds, "Ready", True, "WorkersReady",
                                  f"{ready} worker(s) ready", gen)
        else:
            conds = set_condition(conds, "Ready", False, "NoWorkers",
                                  "no worker has registered with this pool", gen)
        new = {**status, "observedGeneration": gen, "replicas": pool["spec"]["replicas"],
               "readyReplicas": ready, "capacity": capacity, "conditions": conds}
        if new != status:
            await client.patch(res.Status, name, {"status": new}, namespace=ns,
                               patch_type=PatchType.MERGE)
        # Worker readiness is not a watch event: look again periodically.
        return 2.0

    return Controller(name="workerpool", primary=WorkerPool, reconcile=reconcile,
                      concurrency=concurrency)
