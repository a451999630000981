"""OTLP/HTTP for the agents' own spans and logs, on the worker's metadata address.

A sandbox's ``OTEL_EXPORTER_OTLP_ENDPOINT`` is its worker's metadata service, so an
agent using an OpenTelemetry SDK exports to ``/v1/traces`` and ``/v1/logs`` there. The
metadata service knows the sender by its address (anything else gets 403) and hands
the request here with the execution it belongs to. The body is checked as the OTLP/HTTP
spec asks (``clrk.telemetry.otlp_http``; a body that does not decode gets 400), turned
into protobuf and forwarded to the API server under the
invocation, where it is stamped with the agent's identity and trace
(``clrk.telemetry.agent_otlp``). The answer waits for the API server, so a flush that
returned means the spans are stored; when it is away the agent gets 503 (retryable)
and its SDK decides whether to try again.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

from starlette.requests import Request
from starlette.responses import Response

from clrk.egress.attribution import Attribution
from clrk.telemetry.otlp_decode import OTLPError, Signal, decode
from clrk.telemetry.otlp_http import (
    MAX_BODY,
    ExportRefused,
    media_of,
    read_export,
    refusal,
    success,
)

__all__ = ["MAX_BODY", "MAX_IN_FLIGHT", "Signal", "Sink", "receive"]
MAX_IN_FLIGHT = 4  # export requests of one sandbox forwarded at once; more get 429


class Sink(Protocol):
    """Where an export goes once checked: the API server (worker.telemetry)."""

    async def export(self, who: Attribution, signal: Signal, body: bytes
                     ) -> tuple[int, str]:
        """Forward an OTLP protobuf body; returns the HTTP status and its message."""
        ...


async def receive(request: Request, signal: Signal, who: Attribution | None,
                  sink: Sink | None, busy: bool = False) -> Response:
    """Answer one export request of a known sandbox; ``who`` is its execution (None
    while a warm sandbox waits for its invocation)."""
    try:
        media, body = await read_export(request, signal)
    except ExportRefused as err:
        return refusal(err.code, err.text, media_of(request))
    if who is None or sink is None:
        return refusal(503, "this sandbox's invocation has not started yet", media)
    if busy:
        return refusal(429, f"at most {MAX_IN_FLIGHT} export requests at once", media)
    try:
        message = await asyncio.to_thread(decode, signal, body, media)
    except OTLPError as err:
        return refusal(400, str(err), media)
    code, text = await sink.export(who, signal, message.SerializeToString())
    if code == 200:
        return success(signal, media)
    if code in (400, 413):
        return refusal(code, text, media)
    return refusal(503, f"the {signal} could not be stored now: {text}", media)
