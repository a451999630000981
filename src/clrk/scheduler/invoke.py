"""Invoking a TaskAgent: admission (size, maxConcurrent), picking a worker, dispatching,
and turning the worker's frames into the agent's HTTP contract.

The status code depends on how the agent exits, which is only known at the end. Output
is held back until the agent exits or 64 KiB have accumulated; past that the response
commits to 200 and streams (the final outcome is still recorded).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from clrk.api.agents import TaskAgent
from clrk.apiserver.errors import APIError, not_found
from clrk.apiserver.handlers import Reply
from clrk.apiserver.storage import Key, Store
from clrk.scheduler.registry import WorkerInfo, WorkerRegistry
from clrk.worker.agents import envelope
from clrk.worker.agents.task import Outcome
from clrk.worker.protocol import Dispatch, parse_frame

log = logging.getLogger("clrk.scheduler")
GROUP = "clrk.apoxy.dev"
HOLD_BACK = 64 * 1024


@dataclass
class Invoker:
    store: Store
    registry: WorkerRegistry
    in_flight: dict[tuple[str, str], int] = field(default_factory=dict)

    def _agent(self, namespace: str, name: str) -> tuple[dict[str, Any], dict[str, Any]]:
        agent = self.store.get(Key(GROUP, "taskagents", namespace, name))
        if agent is None:
            raise not_found("taskagents", name, GROUP)
        template = agent["spec"]["template"]
        rev_name = (agent.get("status") or {}).get("latestCreatedRevisionName")
        if rev_name:
            rev = self.store.get(Key(GROUP, "agentsandboxrevisions", namespace, rev_name))
            if rev is not None:
                template = rev["spec"]["template"]
        return agent, template

    async def invoke(self, namespace: str, name: str, body: bytes,
                     headers: Mapping[str, str]) -> Reply:
        agent_doc, template = self._agent(namespace, name)
        agent = TaskAgent.model_validate(agent_doc)
        lower = {k.lower(): v for k, v in headers.items()}
        exec_id = envelope.execution_id(lower)
        event = envelope.build(namespace, name, exec_id, body,
                               lower.get("content-type", ""), lower.get("x-clrk-trigger"))
        key = (namespace, name)
        limit = agent.spec.max_concurrent
        if limit and self.in_flight.get(key, 0) >= limit:
            raise APIError(429, f"TaskAgent {namespace}/{name} already runs {limit} "
                           "execution(s) (spec.maxConcurrent)", "TooManyRequests",
                           name=name, kind="taskagents")
        pool = agent.spec.worker_pool_ref
        self.in_flight[key] = self.in_flight.get(key, 0) + 1
        try:
            frames, worker = await self._dispatch(namespace, pool, agent_doc, template, event)
        except BaseException:
            self._done(key)
            raise
        return await self._reply(frames, worker, key, exec_id)

    def _done(self, key: tuple[str, str]) -> None:
        self.in_flight[key] -= 1
        if not self.in_flight[key]:
            del self.in_flight[key]

    async def _dispatch(self, namespace: str, pool: str, agent: dict[str, Any],
                        template: dict[str, Any], event: dict[str, Any]
                        ) -> tuple[AsyncIterator[bytes], WorkerInfo]:
        """Send to the best worker; a dispatch refused before the agent starts goes to the
        next one."""
        tried: list[str] = []
        body = Dispatch(agent, template, event).to_json()
        for worker in self.registry.candidates(namespace, pool):
            self.registry.reserve(worker)
            client = httpx.AsyncClient(timeout=httpx.Timeout(10, read=None))
            try:
                req = client.build_request("POST", f"{worker.url}/v1/executions",
                                           content=body,
                                           headers={"Content-Type": "application/json"})
                resp = await client.send(req, stream=True)
            except httpx.HTTPError as err:
                self.registry.release(worker)
                await client.aclose()
                tried.append(f"{worker.name}: {err}")
                continue
            if resp.status_code != 200:
                self.registry.release(worker)
                await resp.aclose()
                await client.aclose()
                tried.append(f"{worker.name}: {resp.status_code}")
                continue

            async def lines(resp: httpx.Response = resp, client: httpx.AsyncClient = client,
                            worker: WorkerInfo = worker) -> AsyncIterator[bytes]:
                try:
                    async for line in resp.aiter_lines():
                        if line:
                            yield line.encode()
                finally:
                    self.registry.release(worker)
                    await resp.aclose()
                    await client.aclose()

            return lines(), worker
        if self.registry.full(namespace, pool):
            raise APIError(429, f"every worker of pool {pool} is at capacity",
                           "TooManyRequests")
        detail = f" (tried {', '.join(tried)})" if tried else ""
        raise APIError(503, f"no ready worker in WorkerPool {namespace}/{pool}{detail}",
                       "ServiceUnavailable")

    async def _reply(self, frames: AsyncIterator[bytes], worker: WorkerInfo,
                     key: tuple[str, str], exec_id: str) -> Reply:
        held = bytearray()
        outcome: Outcome | None = None
        lost = ""
        try:
            async for line in frames:
                kind, value = parse_frame(line)
                if kind == "result":
                    assert isinstance(value, Outcome)
                    outcome = value
                    break
                if kind == "stdout":
                    assert isinstance(value, bytes)
                    held.extend(value)
                    if len(held) > HOLD_BACK:
                        return self._streaming(bytes(held), frames, key, exec_id)
        except httpx.HTTPError as err:  # the worker died or the connection broke
            lost = f": {err}"
        except BaseException:
            self._done(key)
            raise
        self._done(key)
        if outcome is None:
            outcome = Outcome("Failed", 502, None,
                              f"worker {worker.name} ended the execution without a result"
                              f"{lost}")
        headers = {"X-Clrk-Execution-ID": exec_id, **outcome.headers}
        if outcome.reason:
            headers["X-Clrk-Reason"] = outcome.reason[:512]
        return Reply(status=outcome.http_status, raw=bytes(held), headers=headers,
                     media_type="application/octet-stream")

    def _streaming(self, head: bytes, frames: AsyncIterator[bytes], key: tuple[str, str],
                   exec_id: str) -> Reply:
        async def body() -> AsyncIterator[bytes]:
            try:
                yield head
                async for line in frames:
                    kind, value = parse_frame(line)
                    if kind == "stdout":
                        assert isinstance(value, bytes)
                        yield value
                    elif kind == "result":
                        assert isinstance(value, Outcome)
                        if value.phase != "Succeeded":
                            log.warning("execution %s ended %s after its response started: %s",
                                        exec_id, value.phase, value.reason)
            except httpx.HTTPError as err:
                log.warning("execution %s lost its worker mid-response: %s", exec_id, err)
            finally:
                self._done(key)

        return Reply(status=200, stream=body(), headers={"X-Clrk-Execution-ID": exec_id},
                     media_type="application/octet-stream")
