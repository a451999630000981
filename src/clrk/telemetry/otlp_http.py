"""The OTLP/HTTP request and answer rules, for every place clrk receives OTLP.

Two servers take OTLP/HTTP exports: the worker's metadata address (agents' own spans,
``clrk.worker.otlp``) and `clrk dev`'s receiver (``clrk.telemetry.otlp_receive``).
Both check a request as the OTLP/HTTP specification asks, here: protobuf or JSON,
else 415; gzip or no content encoding; at most MAX_BODY bytes as sent and again once
inflated, else 413, refused before the whole body is read; and answer with the
signal's Export…ServiceResponse, or an error carrying a ``google.rpc.Status`` in the
request's encoding.
"""

from __future__ import annotations

import zlib

from google.protobuf import json_format
from google.protobuf.message import Message
from google.rpc.status_pb2 import Status
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceResponse,
)
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from clrk.telemetry.otlp_decode import JSON, PROTOBUF, Signal

__all__ = ["JSON", "MAX_BODY", "PROTOBUF", "ExportRefused", "media_of", "read_export",
           "refusal", "success"]
MAX_BODY = 4 * 1024 * 1024  # one export request, as sent and once inflated
RETRY_AFTER = "2"
# gRPC status codes for the Status body, by HTTP status.
_GRPC = {400: 3, 403: 7, 405: 12, 413: 8, 415: 3, 429: 8, 503: 14}


class ExportRefused(Exception):
    """An export request refused before it is decoded: its HTTP status and reason."""

    def __init__(self, code: int, text: str) -> None:
        super().__init__(text)
        self.code = code
        self.text = text


def media_of(request: Request) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


def _encoded(message: Message, media: str) -> Response:
    if media == PROTOBUF:
        return Response(message.SerializeToString(), media_type=PROTOBUF)
    return Response(json_format.MessageToJson(message, indent=None), media_type=JSON)


def refusal(code: int, text: str, media: str = JSON) -> Response:
    """An OTLP/HTTP error: a ``google.rpc.Status`` in the request's encoding (JSON when
    the request's own is not one OTLP knows)."""
    response = _encoded(Status(code=_GRPC.get(code, 13), message=text),
                        media if media in (PROTOBUF, JSON) else JSON)
    response.status_code = code
    if code in (429, 503):
        response.headers["Retry-After"] = RETRY_AFTER
    return response


def success(signal: Signal, media: str) -> Response:
    if signal == "traces":
        return _encoded(ExportTraceServiceResponse(), media)
    return _encoded(ExportLogsServiceResponse(), media)


async def _body(request: Request) -> bytes:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY:
        raise ExportRefused(413, f"an export request may be at most {MAX_BODY} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            raise ExportRefused(413, f"an export request may be at most {MAX_BODY} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _inflated(body: bytes, encoding: str) -> bytes:
    if encoding in ("", "identity"):
        return body
    if encoding != "gzip":
        raise ExportRefused(400, f"content encoding {encoding!r}: send gzip or none")
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        out = inflater.decompress(body, MAX_BODY + 1)
    except zlib.error as err:
        raise ExportRefused(400, f"not gzip: {err}") from None
    if len(out) > MAX_BODY:
        raise ExportRefused(413, f"an export request may be at most {MAX_BODY} bytes "
                                 "once inflated")
    return out


async def read_export(request: Request, signal: Signal) -> tuple[str, bytes]:
    """The media type and the inflated body of an export request to ``/v1/<signal>``;
    ExportRefused for one that breaks the rules above."""
    if request.method != "POST":
        raise ExportRefused(405, f"/v1/{signal} accepts POST only")
    # The body is read before the content type is judged: an answer sent while the
    # request's body is still unread makes the server close a connection with data
    # pending, and the client then reads a reset instead of the 415.
    try:
        body = await _body(request)
    except ClientDisconnect:
        raise ExportRefused(400, "the client went away mid-body") from None
    media = media_of(request)
    if media not in (PROTOBUF, JSON):
        raise ExportRefused(415, f"content type {media or 'none'!r}: send {PROTOBUF} "
                                 f"or {JSON}")
    return media, _inflated(body, request.headers.get("content-encoding", "").strip().lower())
