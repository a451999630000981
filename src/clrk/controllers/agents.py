"""The TaskAgent and DaemonAgent controllers: revisions and status conditions."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from lightkube import AsyncClient
from lightkube.types import PatchType

from clrk.api.agents import DaemonAgent, TaskAgent
from clrk.api.gateway import EgressGateway
from clrk.api.revision import AgentSandboxRevision
from clrk.api.workerpool import WorkerPool
from clrk.client import get_or_none, resource_class, to_model
from clrk.controllers import agent_status, events, revisions
from clrk.controllers.conditions import newly_false, set_condition
from clrk.controllers.runtime import Controller, Key, Watch
from clrk.controllers.workerpool import WorkerRegistry

# False conditions that say something is under way, not wrong: no Warning for them.
IN_PROGRESS = frozenset({"Pulling"})
# How often a DaemonAgent's placement is looked at again: a worker that stops
# heartbeating is stale after clrk.scheduler.registry.STALE_AFTER, so its daemons are
# placed elsewhere within the sum of the two (under 10 s).
DAEMON_RECHECK_SECONDS = 2.0


def place(registry: WorkerRegistry, namespace: str, pool: str,
          current: str | None) -> str | None:
    """Keep a DaemonAgent where it runs while that worker is ready; else the best worker."""
    ready = registry.candidates(namespace, pool)
    if current and current in {w.name for w in ready}:
        return current
    return ready[0].name if ready else None


async def image_ready(client: AsyncClient, ns: str, revision: str,
                      conds: list[dict[str, Any]], generation: int) -> list[dict[str, Any]]:
    """ImageReady: whether a worker pulled the image of the revision that runs, and why
    not (a registry out of reach, an image that does not exist) where a pull failed, so
    `kubectl get` and `clrk agents` say it, not only the revision."""
    rev = await get_or_none(client, resource_class(AgentSandboxRevision), revision, ns)
    if rev is None:
        return conds
    image = rev["spec"]["template"]["spec"]["image"]
    ready = next((c for c in (rev.get("status") or {}).get("conditions") or []
                  if c.get("type") == "Ready"), None)
    if ready is None:
        return set_condition(conds, "ImageReady", False, "Pulling",
                             f"no worker has pulled {image} yet", generation)
    if ready.get("status") == "True":
        return set_condition(conds, "ImageReady", True, "ImagePulled",
                             f"{image} is pulled ({revision})", generation)
    return set_condition(conds, "ImageReady", False, str(ready.get("reason") or "ImagePullFailed"),
                         f"{image} cannot be pulled: {ready.get('message') or ''}", generation)


def agent_controller(client: AsyncClient, cls: type[TaskAgent] | type[DaemonAgent],
                     concurrency: int, registry: WorkerRegistry | None = None) -> Controller:
    res = resource_class(cls)
    kind = cls.kind_info.kind

    async def by_revision(obj: Any) -> Iterable[Key]:
        md = obj.metadata
        if (md.labels or {}).get(revisions.LABEL_KIND) != kind:
            return []
        return [(md.namespace or "", (md.labels or {}).get(revisions.LABEL_AGENT, ""))]

    async def referencing(obj: Any) -> Iterable[Key]:
        """Agents in the namespace of a pool or gateway that changed."""
        ns = obj.metadata.namespace or ""
        return [(ns, a.metadata.name) async for a in client.list(res, namespace=ns)]

    async def reconcile(key: Key) -> float | None:
        ns, name = key
        raw = await get_or_none(client, res, name, ns)
        if raw is None or raw["metadata"].get("deletionTimestamp"):
            return None
        agent = to_model(cls, raw)
        status = dict(raw.get("status") or {})
        pin = agent.spec.pinned_revision_name
        current, ready = await revisions.ensure(client, raw, agent.spec.template,
                                                status.get("latestReadyRevisionName"), pin)
        conds = await agent_status.conditions(client, agent, status.get("conditions") or [])
        serving: str | None = current
        if pin:
            rev = await get_or_none(client, resource_class(AgentSandboxRevision), pin, ns)
            try:
                _, serving, _ = revisions.serving(raw, rev)
                conds = set_condition(conds, "RevisionPinned", True, "Pinned",
                                      f"runs revision {pin}; the latest is {current}",
                                      raw["metadata"]["generation"])
            except revisions.PinnedRevisionMissing as err:
                serving = None
                conds = set_condition(conds, "RevisionPinned", False, "RevisionNotFound",
                                      str(err), raw["metadata"]["generation"])
        else:
            conds = [c for c in conds if c.get("type") != "RevisionPinned"]
        if serving is not None:
            conds = await image_ready(client, ns, serving, conds, raw["metadata"]["generation"])
        new = {**status, "observedGeneration": raw["metadata"]["generation"],
               "latestCreatedRevisionName": current, "servingRevisionName": serving,
               "conditions": conds}
        if ready:
            new["latestReadyRevisionName"] = ready
        requeue = None
        if cls is DaemonAgent and registry is not None:
            # Exactly one copy: the daemon lives on the one worker status.worker names.
            worker = place(registry, ns, agent.spec.worker_pool_ref, status.get("worker"))
            if worker != status.get("worker"):
                new["worker"] = worker
                if worker is None:
                    new["phase"] = "Pending"
                    new["message"] = f"no ready worker in pool {agent.spec.worker_pool_ref}"
            requeue = DAEMON_RECHECK_SECONDS  # worker loss is not a watch event
        if new != status:
            await client.patch(res.Status, name, {"status": new}, namespace=ns,
                               patch_type=PatchType.MERGE)
            for cond in newly_false(status.get("conditions") or [], conds):
                if cond.get("reason") in IN_PROGRESS:
                    continue
                await events.emit(client, raw, str(cond.get("reason")),
                                  f'{cond.get("type")}: {cond.get("message")}', "Warning")
        return requeue

    return Controller(
        name=kind.lower(), primary=cls, reconcile=reconcile, concurrency=concurrency,
        secondary=[Watch(AgentSandboxRevision, by_revision), Watch(WorkerPool, referencing),
                   Watch(EgressGateway, referencing)],
    )
