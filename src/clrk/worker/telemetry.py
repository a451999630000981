"""A worker's reports to the API server, which owns the telemetry store: DaemonAgent
runs as Invocations and their output as log lines (batched every half second), and the
agents' own OTLP exports (forwarded one request at a time, under their invocation).

Reporting never stops an agent: a failed report is logged and dropped.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
from typing import Any

import httpx
from lightkube.config.kubeconfig import SingleConfig

from clrk import kubeconfig
from clrk.egress.attribution import Attribution
from clrk.telemetry.otlp_decode import PROTOBUF, Signal

log = logging.getLogger("clrk.worker.telemetry")
API = "/apis/clrk.apoxy.dev/v1alpha1"
PLURALS = {"TaskAgent": "taskagents", "DaemonAgent": "daemonagents"}
FLUSH_SECONDS = 0.5


class TelemetryReporter:
    def __init__(self, config: SingleConfig, worker: str) -> None:
        self.server = config.cluster.server.rstrip("/")
        self.worker = worker
        self._client = kubeconfig.http_client(config, 10)
        self._pending: dict[tuple[str, str, str], list[dict[str, str]]] = {}
        self._flusher: asyncio.Task[None] | None = None

    def _url(self, ns: str, name: str, sub: str) -> str:
        return f"{self.server}{API}/namespaces/{ns}/daemonagents/{name}/{sub}"

    async def begin(self, ns: str, name: str, revision: str | None) -> dict[str, str] | None:
        """A new run; returns its Invocation's name, traceId and spanId (None when the
        API is away)."""
        doc = await self._post(self._url(ns, name, "runs"),
                               {"action": "begin", "revision": revision, "worker": self.worker})
        return {k: str(doc.get(k, "")) for k in ("invocation", "traceId", "spanId")} \
            if doc else None

    async def end(self, ns: str, name: str, invocation: str | None, phase: str,
                  exit_code: int | None, reason: str) -> None:
        if invocation is None:
            return
        await self.flush()
        await self._post(self._url(ns, name, "runs"), {
            "action": "end", "invocation": invocation, "phase": phase,
            "exitCode": exit_code, "reason": reason})

    async def export(self, who: Attribution, signal: Signal, body: bytes
                     ) -> tuple[int, str]:
        """An agent's OTLP export (protobuf) for its invocation: the API server stamps
        and stores it. Returns the HTTP status and, unless 200, why."""
        url = (f"{self.server}{API}/namespaces/{who.namespace}/"
               f"{PLURALS[who.agent_kind]}/{who.agent_name}/{signal}")
        try:
            r = await self._client.post(url, content=body, params={
                "invocation": who.invocation}, headers={"Content-Type": PROTOBUF})
        except httpx.HTTPError as err:
            log.warning("forwarding %s of %s failed: %s", signal, who.invocation, err)
            return 503, str(err) or type(err).__name__
        if r.status_code == 200:
            return 200, ""
        log.warning("%s of %s refused: %s %s", signal, who.invocation, r.status_code,
                    r.text[:200])
        try:
            return r.status_code, str(r.json().get("message", ""))
        except (ValueError, AttributeError):
            return r.status_code, r.text[:200]

    async def connections(self, ns: str, gateway: str, items: list[dict[str, Any]]) -> bool:
        url = f"{self.server}{API}/namespaces/{ns}/egressgateways/{gateway}/connections"
        return await self._post(url, {"items": items}) is not None

    def _usage_url(self, ns: str, route: str) -> str:
        return f"{self.server}{API}/namespaces/{ns}/aiproviderroutes/{route}/usage"

    async def used(self, ns: str, route: str, gateway: str) -> int:
        """Tokens the route has used today through ``gateway`` (all workers)."""
        r = await self._client.get(self._usage_url(ns, route), params={"gateway": gateway})
        r.raise_for_status()
        return int(r.json()["tokens"])

    async def add(self, ns: str, route: str, gateway: str, tokens: int) -> None:
        r = await self._client.post(self._usage_url(ns, route),
                                    json={"gateway": gateway, "tokens": tokens})
        r.raise_for_status()

    async def take(self, ns: str, policy: str, key: str) -> float | None:
        """One request against a PerAgent or PerRoute rate window (shared by every
        worker): None if allowed, else seconds until the window reopens."""
        r = await self._client.post(
            f"{self.server}{API}/namespaces/{ns}/ratelimitpolicies/{policy}/take",
            json={"key": key})
        r.raise_for_status()
        doc = r.json()
        return None if doc["allowed"] else float(doc["retryAfter"])

    def output(self, ns: str, name: str, invocation: str | None, stream: str,
               data: bytes) -> None:
        if invocation is None:
            return
        self._pending.setdefault((ns, name, invocation), []).append(
            {"stream": stream, "data": base64.b64encode(data).decode()})
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._later())

    async def _later(self) -> None:
        await asyncio.sleep(FLUSH_SECONDS)
        await self.flush()

    async def flush(self) -> None:
        pending, self._pending = self._pending, {}
        for (ns, name, invocation), records in pending.items():
            await self._post(self._url(ns, name, "logs"),
                             {"invocation": invocation, "records": records})

    async def close(self) -> None:
        await self.flush()
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
        await self._client.aclose()

    async def _post(self, url: str, body: dict[str, Any]) -> dict[str, Any] | None:
        try:
            r = await self._client.post(url, json=body)
        except httpx.HTTPError as err:
            log.warning("telemetry report to %s failed: %s", url, err)
            return None
        if r.status_code != 200:
            log.warning("telemetry report to %s refused: %s %s", url, r.status_code,
                        r.text[:200])
            return None
        doc: dict[str, Any] = r.json()
        return doc
