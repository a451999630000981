"""The ext_proc gRPC server Envoy calls for every request on a terminated chain.

It listens on a Unix socket in the worker's Envoy directory, so nothing outside the
worker can reach it, and runs on the worker's event loop (grpc.aio). Each gRPC stream
is one HTTP request (``Exchange``); the chain's identity comes in the stream's initial
metadata, the sandbox's address in the ``source.address`` attribute.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
from envoy.service.auth.v3 import external_auth_pb2 as auth_pb
from envoy.service.auth.v3 import external_auth_pb2_grpc as auth_grpc
from envoy.service.ext_proc.v3 import external_processor_pb2 as pb
from envoy.service.ext_proc.v3 import external_processor_pb2_grpc as pb_grpc
from google.rpc import status_pb2

from clrk.egress.l4 import admits
from clrk.egress.policy.exchange import Exchange
from clrk.egress.policy.state import PolicyState

log = logging.getLogger("clrk.egress.policy")
ATTRIBUTES = "envoy.filters.http.ext_proc"


def _source(msg: pb.ProcessingRequest) -> str:
    attrs = msg.attributes.get(ATTRIBUTES)
    if attrs is None or "source.address" not in attrs.fields:
        return ""
    return str(attrs.fields["source.address"].string_value)


class Processor(pb_grpc.ExternalProcessorServicer):  # type: ignore[misc]
    def __init__(self, state: PolicyState) -> None:
        self.state = state
        self._finishing: set[asyncio.Task[None]] = set()

    def _finish(self, exchange: Exchange) -> None:
        """Accounting and the record outlive the gRPC stream: Envoy closes it (which
        cancels this handler) as soon as it has the last answer."""
        if exchange.finished or exchange.finishing:
            return
        exchange.finishing = True
        task = asyncio.create_task(exchange.finish())
        self._finishing.add(task)
        task.add_done_callback(self._finishing.discard)

    async def Process(self, requests: AsyncIterator[pb.ProcessingRequest],
                      context: Any) -> AsyncIterator[pb.ProcessingResponse]:
        meta = {k: v for k, v in context.invocation_metadata()}
        gateway = str(meta.get("x-clrk-gateway", "")).rsplit("/", 1)[-1]
        port = int(meta.get("x-clrk-port") or 443)
        exchange = Exchange(self.state, gateway, str(meta.get("x-clrk-host", "")), port,
                            fixed_route=str(meta.get("x-clrk-route", "")))
        try:
            async for msg in requests:
                which = msg.WhichOneof("request")
                if which == "request_headers":
                    yield await exchange.request_headers(msg.request_headers, _source(msg))
                elif which == "request_body":
                    yield await exchange.request_body(msg.request_body)
                elif which == "response_headers":
                    answer = exchange.response_headers(msg.response_headers)
                    if msg.response_headers.end_of_stream:
                        self._finish(exchange)
                    yield answer
                elif which == "response_body":
                    answer = exchange.response_body(msg.response_body)
                    if msg.response_body.end_of_stream:
                        self._finish(exchange)
                    yield answer
                if exchange.record.denied:
                    break
        finally:
            self._finish(exchange)


class SourceCheck(auth_grpc.AuthorizationServicer):  # type: ignore[misc]
    """Envoy's network ext_authz on chains whose routes name sourceAgents: one check per
    connection, by the agent that owns the sandbox's address."""

    def __init__(self, state: PolicyState) -> None:
        self.state = state

    async def Check(self, request: auth_pb.CheckRequest,
                    context: Any) -> auth_pb.CheckResponse:
        meta = {k: v for k, v in context.invocation_metadata()}
        sources = tuple(s for s in str(meta.get("x-clrk-sources", "")).split(",") if s)
        src = request.attributes.source.address.socket_address
        dst = request.attributes.destination.address.socket_address
        who = self.state.attribution.of(src.address)
        agent = (who.agent_kind, who.agent_name) if who else None
        if admits(sources, agent):
            return auth_pb.CheckResponse(status=status_pb2.Status(code=0))
        reason = (f"{agent[0]} {agent[1]} is not among the route's sourceAgents" if agent
                  else "an unattributed sandbox is not among the route's sourceAgents")
        if self.state.records is not None:
            item = {"start_time": dt.datetime.now(dt.UTC).isoformat(),
                    "source": f"{src.address}:{src.port_value}",
                    "destination": f"{dst.address}:{dst.port_value}",
                    "cluster": "clrk_deny", "chain": str(meta.get("x-clrk-chain", "")),
                    "deny_reason": reason, "bytes_received": 0, "bytes_sent": 0,
                    "attribution": who.to_json() if who else None}
            self.state.records.record(str(meta.get("x-clrk-gateway", "")).rsplit("/", 1)[-1],
                                      item)
        return auth_pb.CheckResponse(status=status_pb2.Status(code=7, message=reason))


class PolicyService:
    def __init__(self, state: PolicyState, socket: Path) -> None:
        self.state = state
        self.socket = socket
        self._server: grpc.aio.Server | None = None

    async def start(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.socket.unlink()
        self.socket.parent.mkdir(parents=True, exist_ok=True)
        server = grpc.aio.server(options=[("grpc.max_receive_message_length", 64 << 20),
                                          ("grpc.max_send_message_length", 64 << 20)])
        pb_grpc.add_ExternalProcessorServicer_to_server(Processor(self.state), server)
        auth_grpc.add_AuthorizationServicer_to_server(SourceCheck(self.state), server)
        server.add_insecure_port(f"unix:{self.socket}")
        await server.start()
        self._server = server

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.stop(grace=1)
            self._server = None
