"""The API server subresources that reach workers: taskagents/{name}/invoke and
workerpools/{name}/heartbeat."""

from __future__ import annotations

from clrk.apiserver.errors import APIError
from clrk.apiserver.handlers import API, Reply, Request
from clrk.scheduler.invoke import GROUP, Invoker
from clrk.scheduler.registry import WorkerInfo, WorkerRegistry
from clrk.worker.agents.envelope import MAX_BODY


def install(api: API, invoker: Invoker, registry: WorkerRegistry) -> None:
    async def invoke(req: Request) -> Reply:
        if req.method != "POST":
            raise APIError(405, "invoke accepts POST only", "MethodNotAllowed")
        return await invoker.invoke(req.namespace or "", req.name or "", req.body, req.headers)

    async def heartbeat(req: Request) -> Reply:
        if req.method != "POST":
            raise APIError(405, "heartbeat accepts POST only", "MethodNotAllowed")
        doc = await req.json_object()
        try:
            info = WorkerInfo.from_heartbeat(req.namespace or "", req.name or "", doc)
        except ValueError as err:
            raise APIError(400, str(err)) from None
        registry.heartbeat(info)
        return Reply(body={"kind": "Status", "apiVersion": "v1", "status": "Success"})

    api.subresources[(GROUP, "taskagents", "invoke")] = invoke
    api.body_limits[(GROUP, "taskagents", "invoke")] = MAX_BODY
    api.body_refused[(GROUP, "taskagents", "invoke")] = invoker.refused
    api.subresources[(GROUP, "workerpools", "heartbeat")] = heartbeat
