"""OTLP/HTTP for the agents' own spans and logs, on the worker's metadata address.

A sandbox's ``OTEL_EXPORTER_OTLP_ENDPOINT`` is its worker's metadata service, so an
agent using an OpenTelemetry SDK exports to ``/v1/traces`` and ``/v1/logs`` there. The
metadata service knows the sender by its address (anything else gets 403) and hands
the request here with the execution it belongs to. The body is checked as the OTLP/HTTP
spec asks (protobuf or JSON, else 415; gzip or not; at most 4 MiB, inflated too, else
413; a body that does not decode, 400, with the reason in a ``google.rpc.Status`` in
the request's encoding), turned into protobuf and forwarded to the API server under the
invocation, where it is stamped with the agent's identity and trace
(``clrk.telemetry.agent_otlp``). The answer waits for the API server, so a flush that
returned means the spans are stored; when it is away the agent gets 503 (retryable)
and its SDK decides whether to try again.
"""

from __future__ import annotations

import asyncio
import zlib
from typing import Protocol

from google.protobuf import json_format
from google.protobuf.message import Message
from google.rpc.status_pb2 import Status
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceResponse,
)
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from clrk.egress.attribution import Attribution
from clrk.telemetry.agent_otlp import MAX_BODY
from clrk.telemetry.otlp_decode import JSON, PROTOBUF, OTLPError, Signal, decode

__all__ = ["MAX_BODY", "MAX_IN_FLIGHT", "Signal", "Sink", "receive"]
MAX_IN_FLIGHT = 4  # export requests of one sandbox forwarded at once; more get 429
RETRY_AFTER = "2"
# gRPC status codes for the Status body, by HTTP status.
_GRPC = {400: 3, 403: 7, 413: 8, 415: 3, 429: 8, 503: 14}


class Sink(Protocol):
    """Where an export goes once checked: the API server (worker.telemetry)."""

    async def export(self, who: Attribution, signal: Signal, body: bytes
                     ) -> tuple[int, str]:
        """Forward an OTLP protobuf body; returns the HTTP status and its message."""
        ...


class _TooLarge(Exception):
    pass


def _media(request: Request) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


def _encoded(message: Message, media: str) -> Response:
    if media == PROTOBUF:
        return Response(message.SerializeToString(), media_type=PROTOBUF)
    return Response(json_format.MessageToJson(message, indent=None), media_type=JSON)


def _status(code: int, text: str, media: str) -> Response:
    """An OTLP/HTTP error: a ``google.rpc.Status`` in the request's encoding."""
    response = _encoded(Status(code=_GRPC.get(code, 13), message=text), media)
    response.status_code = code
    if code in (429, 503):
        response.headers["Retry-After"] = RETRY_AFTER
    return response


def _success(signal: Signal, media: str) -> Response:
    if signal == "traces":
        return _encoded(ExportTraceServiceResponse(), media)
    return _encoded(ExportLogsServiceResponse(), media)


async def _body(request: Request) -> bytes:
    """The request body, refused past MAX_BODY before it is all read."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY:
        raise _TooLarge
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            raise _TooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def _inflated(body: bytes, encoding: str) -> bytes:
    """The body without its Content-Encoding (gzip, as OTLP exporters may send it),
    refused past MAX_BODY once inflated."""
    if encoding in ("", "identity"):
        return body
    if encoding != "gzip":
        raise ValueError(f"content encoding {encoding!r}: send gzip or none")
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        out = inflater.decompress(body, MAX_BODY + 1)
    except zlib.error as err:
        raise ValueError(f"not gzip: {err}") from None
    if len(out) > MAX_BODY:
        raise _TooLarge
    return out


async def receive(request: Request, signal: Signal, who: Attribution | None,
                  sink: Sink | None, busy: bool = False) -> Response:
    """Answer one export request of a known sandbox; ``who`` is its execution (None
    while a warm sandbox waits for its invocation)."""
    media = _media(request)
    if media not in (PROTOBUF, JSON):
        return _status(415, f"content type {media or 'none'!r}: send {PROTOBUF} or {JSON}",
                       JSON)
    try:
        body = _inflated(await _body(request),
                         request.headers.get("content-encoding", "").strip().lower())
    except ValueError as err:
        return _status(400, str(err), media)
    except _TooLarge:
        return _status(413, f"an export request may be at most {MAX_BODY} bytes", media)
    except ClientDisconnect:
        return Response(status_code=400)
    if who is None or sink is None:
        return _status(503, "this sandbox's invocation has not started yet", media)
    if busy:
        return _status(429, f"at most {MAX_IN_FLIGHT} export requests at once", media)
    try:
        message = await asyncio.to_thread(decode, signal, body, media)
    except OTLPError as err:
        return _status(400, str(err), media)
    code, text = await sink.export(who, signal, message.SerializeToString())
    if code == 200:
        return _success(signal, media)
    if code in (400, 413):
        return _status(code, text, media)
    return _status(503, f"the {signal} could not be stored now: {text}", media)
