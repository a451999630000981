"""The spans and logs an agent exports itself (OTLP), stored under the identity clrk
gives its execution, never the one the agent claims.

An agent's sandbox gets ``OTEL_EXPORTER_OTLP_ENDPOINT`` (its worker) and ``TRACEPARENT``
(its invocation's span). The worker knows the sender by its address and forwards the
export request to the API server for that invocation; here it is stamped: the resource
gets ``service.namespace``, every span and log record the agent's identity
(``clrk.agent.namespace``, ``clrk.agent.kind``, ``clrk.agent.name``, ``clrk.invocation``;
any other ``clrk.*`` attribute the agent sent is dropped, those names are clrk's), and
the invocation's trace id. A root span becomes a child of the invocation's span, so
``clrk agents traces`` shows the agent's spans under it, beside the gateway's.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import KeyValue

from clrk.telemetry import otlp_decode
from clrk.telemetry.client import TelemetryStore
from clrk.telemetry.otlp_decode import Signal

RESERVED = "clrk."


@dataclass(frozen=True)
class Identity:
    """Whose records these are: an execution and its invocation's span."""

    namespace: str
    agent_kind: str
    agent_name: str
    invocation: str
    trace_id: str  # 32 hex digits
    span_id: str  # 16 hex digits

    def attributes(self) -> dict[str, str]:
        return {"clrk.agent.namespace": self.namespace, "clrk.agent.kind": self.agent_kind,
                "clrk.agent.name": self.agent_name, "clrk.invocation": self.invocation}


def _put(attributes: Any, values: dict[str, str]) -> None:
    """``values`` set on a repeated KeyValue field, and the agent's ``clrk.*`` dropped."""
    kept = []
    for kv in attributes:
        if not kv.key.startswith(RESERVED) and kv.key not in values:
            copy = KeyValue()
            copy.CopyFrom(kv)
            kept.append(copy)
    del attributes[:]
    attributes.extend(kept)
    for key, value in values.items():
        attributes.add(key=key).value.string_value = value


def _stamp_span(span: Any, who: Identity, trace_id: bytes, span_id: bytes) -> None:
    _put(span.attributes, who.attributes())
    span.trace_id = trace_id
    if len(span.span_id) != 8 or span.span_id == span_id:
        span.span_id = secrets.token_bytes(8)  # the invocation's span is clrk's to write
    if len(span.parent_span_id) != 8:
        span.parent_span_id = span_id  # a root span: a child of the invocation's span


def _stamp_log(record: Any, who: Identity, trace_id: bytes, span_id: bytes) -> None:
    _put(record.attributes, who.attributes())
    record.trace_id = trace_id
    if len(record.span_id) != 8:
        record.span_id = span_id


def stamp(message: ExportTraceServiceRequest | ExportLogsServiceRequest,
          who: Identity) -> None:
    """Give every record of ``message`` the identity and trace of ``who``, in place."""
    trace_id, span_id = bytes.fromhex(who.trace_id), bytes.fromhex(who.span_id)
    resource = {"service.namespace": who.namespace}
    if isinstance(message, ExportTraceServiceRequest):
        for rs in message.resource_spans:
            _put(rs.resource.attributes, resource)
            for ss in rs.scope_spans:
                for span in ss.spans:
                    _stamp_span(span, who, trace_id, span_id)
        return
    for rl in message.resource_logs:
        _put(rl.resource.attributes, resource)
        for sl in rl.scope_logs:
            for record in sl.log_records:
                _stamp_log(record, who, trace_id, span_id)


def rows(signal: Signal, body: bytes, content_type: str, who: Identity) -> list[list[Any]]:
    """The table rows of one export request, stamped; OTLPError for a bad body."""
    message = otlp_decode.decode(signal, body, content_type)
    stamp(message, who)
    return [otlp_decode.span_row(r) if r["signal"] == "span" else otlp_decode.log_row(r)
            for r in otlp_decode.records(message)]


def store(telemetry: TelemetryStore, signal: Signal, body: bytes, content_type: str,
          who: Identity) -> int:
    """Stamp and store one export request; returns how many records it held."""
    found = rows(signal, body, content_type, who)
    telemetry.insert("otel_traces" if signal == "traces" else "otel_logs", found)
    return len(found)
