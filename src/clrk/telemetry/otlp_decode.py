"""OTLP/HTTP request bodies (protobuf or JSON) → typed records → our table rows.

One decoder for everything that receives OTLP: the `clrk dev` receiver the TUI reads
and the worker's endpoint for the spans an agent sends itself. JSON bodies go through
the same generated messages as protobuf ones, after the one place OTLP's JSON departs
from protobuf's JSON mapping: trace and span ids are hex, not base64.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from typing import Any, Literal, TypedDict

from google.protobuf import json_format
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import ResourceLogs

# xds-protos ships old OpenTelemetry protos at the same module paths; if pip wrote them last,
# every decoded log would be empty. Refuse to run on them, saying how to mend the install.
if "scope_logs" not in ResourceLogs.DESCRIPTOR.fields_by_name:
    raise ImportError("the installed opentelemetry.proto modules are xds-protos' old copies "
                      "(no ResourceLogs.scope_logs): reinstall opentelemetry-proto with "
                      "`pip install --no-deps --force-reinstall opentelemetry-proto` (scripts/"
                      "setup.sh does)")

Signal = Literal["traces", "logs"]
PROTOBUF = "application/x-protobuf"
JSON = "application/json"
_EPOCH = dt.datetime(1970, 1, 1)
_KINDS = ("Unspecified", "Internal", "Server", "Client", "Producer", "Consumer")
_STATUS = ("Unset", "Ok", "Error")
# The protobuf JSON parser also takes the original field names, so they are ids too.
_ID_FIELDS = ("traceId", "spanId", "parentSpanId", "trace_id", "span_id", "parent_span_id")


class OTLPError(ValueError):
    """A body that is not an OTLP export request of the signal it was sent for."""


class EventRecord(TypedDict):
    time: str
    name: str
    attributes: dict[str, str]


class SpanRecord(TypedDict):
    signal: Literal["span"]
    time: str  # ISO 8601, UTC, microseconds
    traceId: str
    spanId: str
    parentSpanId: str
    traceState: str
    name: str
    kind: str
    service: str
    resource: dict[str, str]
    scope: str
    scopeVersion: str
    attributes: dict[str, str]
    durationNs: int
    status: str
    statusMessage: str
    events: list[EventRecord]


class LogRecord(TypedDict):
    signal: Literal["log"]
    time: str
    traceId: str
    spanId: str
    flags: int
    severity: str
    severityNumber: int
    service: str
    body: str
    resource: dict[str, str]
    scope: str
    scopeVersion: str
    attributes: dict[str, str]
    event: str


def _hex_ids_to_base64(node: Any) -> Any:
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key in _ID_FIELDS and isinstance(value, str):
                try:
                    value = base64.b64encode(bytes.fromhex(value)).decode()
                except ValueError:
                    raise OTLPError(f"{key} {value[:40]!r} is not hex") from None
            out[key] = _hex_ids_to_base64(value)
        return out
    if isinstance(node, list):
        return [_hex_ids_to_base64(v) for v in node]
    return node


def decode(signal: Signal, body: bytes, content_type: str
           ) -> ExportTraceServiceRequest | ExportLogsServiceRequest:
    """The export request in ``body``; OTLPError names what is wrong."""
    message = ExportTraceServiceRequest() if signal == "traces" else ExportLogsServiceRequest()
    media = content_type.split(";", 1)[0].strip().lower()
    if media == PROTOBUF:
        try:
            message.ParseFromString(body)
        except DecodeError as err:
            raise OTLPError(f"not an OTLP {signal} protobuf body: {err}") from err
    elif media == JSON:
        try:
            doc = json.loads(body)
            if not isinstance(doc, dict):
                raise ValueError(f"the body is a JSON {type(doc).__name__}, not an object")
            json_format.ParseDict(_hex_ids_to_base64(doc), message, ignore_unknown_fields=True)
        except RecursionError:
            raise OTLPError(f"not an OTLP {signal} JSON body: nested too deeply") from None
        except (ValueError, TypeError, AttributeError, json_format.ParseError) as err:
            raise OTLPError(f"not an OTLP {signal} JSON body: {err}") from err
    else:
        raise OTLPError(f"content type {content_type!r}: send {PROTOBUF} or {JSON}")
    return message


def _text(value: AnyValue) -> str:
    which = value.WhichOneof("value")
    if which is None:
        return ""
    if which == "string_value":
        return value.string_value
    if which == "bytes_value":
        return base64.b64encode(value.bytes_value).decode()
    if which in ("int_value", "double_value"):
        return str(getattr(value, which))
    if which == "bool_value":
        return "true" if value.bool_value else "false"
    return json.dumps(json_format.MessageToDict(value), separators=(",", ":"))


def _attrs(kvs: Any) -> dict[str, str]:
    pairs: list[KeyValue] = list(kvs)
    return {kv.key: _text(kv.value) for kv in pairs}


def _time(nanos: int) -> str:
    return (_EPOCH + dt.timedelta(microseconds=nanos // 1000)).isoformat() + "Z"


def records(message: ExportTraceServiceRequest | ExportLogsServiceRequest
            ) -> list[SpanRecord] | list[LogRecord]:
    """The spans or log records of an export request, flattened with their resource."""
    if isinstance(message, ExportTraceServiceRequest):
        spans: list[SpanRecord] = []
        for rs in message.resource_spans:
            resource = _attrs(rs.resource.attributes)
            for ss in rs.scope_spans:
                for s in ss.spans:
                    spans.append(SpanRecord(
                        signal="span", time=_time(s.start_time_unix_nano),
                        traceId=s.trace_id.hex(), spanId=s.span_id.hex(),
                        parentSpanId=s.parent_span_id.hex(), traceState=s.trace_state,
                        name=s.name, kind=_KINDS[s.kind] if s.kind < len(_KINDS) else "",
                        service=resource.get("service.name", ""), resource=resource,
                        scope=ss.scope.name, scopeVersion=ss.scope.version,
                        attributes=_attrs(s.attributes),
                        durationNs=max(0, s.end_time_unix_nano - s.start_time_unix_nano),
                        status=_STATUS[s.status.code] if s.status.code < 3 else "Unset",
                        statusMessage=s.status.message,
                        events=[EventRecord(time=_time(e.time_unix_nano), name=e.name,
                                            attributes=_attrs(e.attributes))
                                for e in s.events]))
        return spans
    logs: list[LogRecord] = []
    for rl in message.resource_logs:
        resource = _attrs(rl.resource.attributes)
        for sl in rl.scope_logs:
            for r in sl.log_records:
                logs.append(LogRecord(
                    signal="log", time=_time(r.time_unix_nano or r.observed_time_unix_nano),
                    traceId=r.trace_id.hex(), spanId=r.span_id.hex(), flags=r.flags & 0xFF,
                    severity=r.severity_text, severityNumber=int(r.severity_number),
                    service=resource.get("service.name", ""), body=_text(r.body),
                    resource=resource, scope=sl.scope.name, scopeVersion=sl.scope.version,
                    attributes=_attrs(r.attributes), event=r.event_name))
    return logs


def _datetime(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.removesuffix("Z"))


def span_row(s: SpanRecord) -> list[Any]:
    """An ``otel_traces`` row (the collector's ClickHouse exporter's columns)."""
    events = s["events"]
    return [_datetime(s["time"]), s["traceId"], s["spanId"], s["parentSpanId"],
            s["traceState"], s["name"], s["kind"], s["service"], s["resource"], s["scope"],
            s["scopeVersion"], s["attributes"], s["durationNs"], s["status"],
            s["statusMessage"], [_datetime(e["time"]) for e in events],
            [e["name"] for e in events], [e["attributes"] for e in events], [], [], [], []]


def log_row(r: LogRecord) -> list[Any]:
    """An ``otel_logs`` row."""
    return [_datetime(r["time"]), r["traceId"], r["spanId"], r["flags"], r["severity"],
            r["severityNumber"], r["service"], r["body"], "", r["resource"], "", r["scope"],
            r["scopeVersion"], {}, r["attributes"], r["event"]]
