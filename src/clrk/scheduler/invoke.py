"""Invoking a TaskAgent: admission (size, maxConcurrent), picking a worker, dispatching,
and turning the worker's frames into the agent's HTTP contract.

The status code depends on how the agent exits, which is only known at the end. Output
is held back until the agent exits or 64 KiB have accumulated; past that the response
commits to 200 and streams (the final outcome is still recorded).

Every call is an Invocation in the telemetry store: Pending on admission, Rejected when
refused, Dispatched when a worker accepts, Running when the agent starts, then its
outcome; the agent's output lines go to ``otel_logs`` under the invocation.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import httpx

from clrk.api.agents import TaskAgent
from clrk.apiserver.errors import APIError, not_found
from clrk.apiserver.handlers import Reply
from clrk.apiserver.storage import Key, Store
from clrk.controllers import revisions
from clrk.scheduler.registry import WorkerInfo, WorkerRegistry
from clrk.serving import header_value
from clrk.telemetry.invocations import InvocationLedger, Started
from clrk.telemetry.logs import AgentLogs, Source
from clrk.worker.agents import envelope
from clrk.worker.agents.task import Outcome, Trace
from clrk.worker.protocol import ALIVE_TIMEOUT, Dispatch, Frame, parse_frame

log = logging.getLogger("clrk.scheduler")
GROUP = "clrk.apoxy.dev"
HOLD_BACK = 64 * 1024


@dataclass
class _Execution:
    """One admitted call: its concurrency slot, its Invocation and its log source."""

    key: tuple[str, str]
    exec_id: str
    started: Started
    source: Source
    ended: bool = False


@dataclass
class Invoker:
    store: Store
    registry: WorkerRegistry
    ledger: InvocationLedger
    logs: AgentLogs
    in_flight: dict[tuple[str, str], int] = field(default_factory=dict)
    _client: httpx.AsyncClient | None = None

    def _http(self) -> httpx.AsyncClient:
        """One pooled client for every dispatch: a new client per call costs tens of
        milliseconds (its TLS context) and a fresh connection."""
        if self._client is None:
            self._client = httpx.AsyncClient(
                # A worker sends a frame at least every ALIVE_SECONDS: silence past
                # ALIVE_TIMEOUT is a lost worker, whose execution fails (WorkerLost).
                timeout=httpx.Timeout(10, read=ALIVE_TIMEOUT),
                limits=httpx.Limits(max_connections=None, max_keepalive_connections=64))
        return self._client

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def _agent(self, namespace: str, name: str
               ) -> tuple[dict[str, Any], dict[str, Any], str | None, str | None]:
        """The agent, the template that runs, its revision and the image digest the
        revision resolved to (the last two None until the controller and a worker have
        caught up with a new template)."""
        agent = self.store.get(Key(GROUP, "taskagents", namespace, name))
        if agent is None:
            raise not_found("taskagents", name, GROUP)
        wanted = revisions.wanted(agent)
        rev = self.store.get(Key(GROUP, "agentsandboxrevisions", namespace, wanted)) \
            if wanted else None
        try:
            template, rev_name, digest = revisions.serving(agent, rev)
        except revisions.PinnedRevisionMissing as err:
            raise APIError(503, str(err), "ServiceUnavailable") from err
        return agent, template, rev_name, digest

    async def invoke(self, namespace: str, name: str, body: bytes,
                     headers: Mapping[str, str]) -> Reply:
        agent_doc, template, revision, digest = self._agent(namespace, name)
        agent = TaskAgent.model_validate(agent_doc)
        lower = {k.lower(): v for k, v in headers.items()}
        exec_id = envelope.execution_id(lower)
        event = envelope.build(namespace, name, exec_id, body,
                               lower.get("content-type", ""), lower.get("x-clrk-trigger"))
        started = self.ledger.begin(namespace, "TaskAgent", name, revision=revision,
                                    trigger=lower.get("x-clrk-trigger") or "http",
                                    execution_id=exec_id)
        ex = _Execution((namespace, name), exec_id, started, Source(
            namespace, "TaskAgent", name, started.name, started.trace_id, started.span_id,
            revision))
        limit = agent.spec.max_concurrent
        if limit and self.in_flight.get(ex.key, 0) >= limit:
            err = APIError(429, f"TaskAgent {namespace}/{name} already runs {limit} "
                           "execution(s) (spec.maxConcurrent)", "TooManyRequests",
                           name=name, kind="taskagents")
            self._reject(ex, "MaxConcurrent", err)
            raise err
        pool = agent.spec.worker_pool_ref
        self.in_flight[ex.key] = self.in_flight.get(ex.key, 0) + 1
        try:
            frames, worker = await self._dispatch(namespace, pool, Dispatch(
                agent_doc, template, event, revision, digest,
                {"name": started.name, "traceId": started.trace_id,
                 "spanId": started.span_id}))
        except APIError as err:
            self._done(ex.key)
            self._reject(ex, "NoCapacity" if err.code == 429 else "NoWorker", err)
            raise
        except BaseException:
            self._done(ex.key)
            self._end(ex, "Failed", reason="DispatchFailed: the call ended before a worker "
                      "took it")
            raise
        self.ledger.transition(namespace, started.name, "Dispatched", worker=worker.name)
        ex.source = Source(namespace, "TaskAgent", name, started.name, started.trace_id,
                           started.span_id, revision, worker.name)
        return await self._reply(frames, worker, ex)

    def refused(self, namespace: str, name: str, headers: Mapping[str, str],
                err: APIError) -> None:
        """A call refused before its body was read (413) is still a Rejected Invocation
        of the agent, if the agent exists."""
        if self.store.get(Key(GROUP, "taskagents", namespace, name)) is None:
            return
        lower = {k.lower(): v for k, v in headers.items()}
        started = self.ledger.begin(namespace, "TaskAgent", name, revision=None,
                                    trigger=lower.get("x-clrk-trigger") or "http",
                                    execution_id=envelope.execution_id(lower))
        self._reject(_Execution((namespace, name), started.execution_id, started, Source(
            namespace, "TaskAgent", name, started.name)), "BodyTooLarge", err)

    def _reject(self, ex: _Execution, reason: str, err: APIError) -> None:
        err.headers["X-Clrk-Invocation"] = ex.started.name
        err.headers["X-Clrk-Execution-ID"] = ex.exec_id
        self._end(ex, "Rejected", reason=f"{reason}: {err.message}", httpStatus=err.code)

    def _end(self, ex: _Execution, phase: str, **status: Any) -> None:
        if ex.ended:
            return
        ex.ended = True
        self.logs.close(ex.source)
        self.ledger.finish(ex.started.namespace, ex.started.name, phase, **status)

    def _finish(self, ex: _Execution, outcome: Outcome) -> None:
        self._end(ex, outcome.phase, reason=outcome.reason or None,
                  exitCode=outcome.exit_code, httpStatus=outcome.http_status,
                  warmStart=outcome.warm)

    def _frame(self, ex: _Execution, kind: str, value: Frame) -> None:
        """Bookkeeping shared by held-back and streamed replies."""
        if kind == "trace":
            assert isinstance(value, Trace)
            self._adopt(ex, value)
        elif kind == "started":
            self.ledger.transition(ex.started.namespace, ex.started.name, "Running")
        elif kind in ("stdout", "stderr"):
            assert isinstance(value, bytes)
            self.logs.write(ex.source, kind, value)

    def _adopt(self, ex: _Execution, trace: Trace) -> None:
        """The worker runs the execution in a warm sandbox whose trace was fixed when it
        started: the Invocation (and its log lines) take that trace."""
        try:
            self.ledger.adopt(ex.started.namespace, ex.started.name, trace.trace_id,
                              trace.span_id)
        except ValueError as err:
            log.warning("execution %s: the worker's trace is refused: %s", ex.exec_id, err)
            return
        ex.started = replace(ex.started, trace_id=trace.trace_id, span_id=trace.span_id)
        ex.source = replace(ex.source, trace_id=trace.trace_id, span_id=trace.span_id)

    def _done(self, key: tuple[str, str]) -> None:
        self.in_flight[key] -= 1
        if not self.in_flight[key]:
            del self.in_flight[key]

    async def _dispatch(self, namespace: str, pool: str, dispatch: Dispatch
                        ) -> tuple[AsyncIterator[bytes], WorkerInfo]:
        """Send to the best worker; a dispatch refused before the agent starts goes to the
        next one."""
        tried: list[str] = []
        body = dispatch.to_json()
        for worker in self.registry.candidates(namespace, pool, dispatch.revision or "",
                                               dispatch.image_digest or ""):
            self.registry.reserve(worker)
            client = self._http()
            try:
                req = client.build_request("POST", f"{worker.url}/v1/executions",
                                           content=body,
                                           headers={"Content-Type": "application/json",
                                                    "Authorization": f"Bearer {worker.token}"})
                resp = await client.send(req, stream=True)
            except httpx.HTTPError as err:
                self.registry.release(worker)
                tried.append(f"{worker.name}: {err}")
                continue
            if resp.status_code != 200:
                self.registry.release(worker)
                await resp.aclose()
                tried.append(f"{worker.name}: {resp.status_code}")
                continue

            async def lines(resp: httpx.Response = resp,
                            worker: WorkerInfo = worker) -> AsyncIterator[bytes]:
                try:
                    async for line in resp.aiter_lines():
                        if line:
                            yield line.encode()
                finally:
                    self.registry.release(worker)
                    await resp.aclose()

            return lines(), worker
        if self.registry.full(namespace, pool):
            raise APIError(429, f"every worker of pool {pool} is at capacity",
                           "TooManyRequests")
        detail = f" (tried {', '.join(tried)})" if tried else ""
        raise APIError(503, f"no ready worker in WorkerPool {namespace}/{pool}{detail}",
                       "ServiceUnavailable")

    @staticmethod
    def _lost(worker: WorkerInfo, detail: str) -> Outcome:
        return Outcome("Failed", 502, None, f"WorkerLost: worker {worker.name} ended the "
                       f"execution without a result{detail}")

    async def _reply(self, frames: AsyncIterator[bytes], worker: WorkerInfo,
                     ex: _Execution) -> Reply:
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
                self._frame(ex, kind, value)
                if kind == "stdout":
                    assert isinstance(value, bytes)
                    held.extend(value)
                    if len(held) > HOLD_BACK:
                        return self._streaming(bytes(held), frames, worker, ex)
        except httpx.HTTPError as err:  # the worker died or the connection broke
            lost = f": {err}"
        except BaseException:
            self._done(ex.key)
            self._end(ex, "Failed", reason="Cancelled: the caller went away")
            raise
        self._done(ex.key)
        if outcome is None:
            outcome = self._lost(worker, lost)
        self._finish(ex, outcome)
        headers = {"X-Clrk-Execution-ID": ex.exec_id, "X-Clrk-Invocation": ex.started.name,
                   **outcome.headers}
        if outcome.reason:
            headers["X-Clrk-Reason"] = header_value(outcome.reason)
        return Reply(status=outcome.http_status, raw=bytes(held), headers=headers,
                     media_type="application/octet-stream")

    def _streaming(self, head: bytes, frames: AsyncIterator[bytes], worker: WorkerInfo,
                   ex: _Execution) -> Reply:
        async def body() -> AsyncIterator[bytes]:
            outcome: Outcome | None = None
            try:
                yield head
                async for line in frames:
                    kind, value = parse_frame(line)
                    if kind == "result":
                        assert isinstance(value, Outcome)
                        outcome = value
                        if value.phase != "Succeeded":
                            log.warning("execution %s ended %s after its response started: %s",
                                        ex.exec_id, value.phase, value.reason)
                        continue
                    self._frame(ex, kind, value)
                    if kind == "stdout":
                        assert isinstance(value, bytes)
                        yield value
                if outcome is None:
                    outcome = self._lost(worker, "")
            except httpx.HTTPError as err:
                log.warning("execution %s lost its worker mid-response: %s", ex.exec_id, err)
                outcome = self._lost(worker, f": {err}")
            finally:
                self._done(ex.key)
                if outcome is not None:
                    self._finish(ex, outcome)
                else:
                    self._end(ex, "Failed", reason="Cancelled: the caller went away before "
                              "the result")

        return Reply(status=200, stream=body(), headers={
            "X-Clrk-Execution-ID": ex.exec_id, "X-Clrk-Invocation": ex.started.name},
            media_type="application/octet-stream")
