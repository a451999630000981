"""OTLP/HTTP bodies (protobuf and JSON) → records → rows, and the stamp an agent's own
export gets (its identity and its invocation's trace, whatever it claimed)."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from clrk.telemetry import agent_otlp, otlp_decode
from clrk.telemetry.otlp_decode import JSON, PROTOBUF, OTLPError
from clrk.telemetry.schema import LOG_COLUMNS, TRACE_COLUMNS

TRACE = "5b8efff798038103d269b633813fc60c"
SPAN = "eee19b7ec3c1b174"
PARENT = "eee19b7ec3c1b173"
START = 1_700_000_000_123_456_789  # ns
WHO = agent_otlp.Identity("team-a", "TaskAgent", "otel-agent", "otel-agent-0a1b2c3d4e",
                          "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331")


def _kv(key: str, value: str) -> KeyValue:
    kv = KeyValue(key=key)
    kv.value.string_value = value
    return kv


def trace_request(trace: str = TRACE, span: str = SPAN, parent: str = "",
                  **attrs: str) -> ExportTraceServiceRequest:
    req = ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    rs.resource.attributes.extend([_kv("service.name", "my-agent"),
                                   _kv("service.namespace", "forged"),
                                   _kv("clrk.agent.kind", "DaemonAgent")])
    ss = rs.scope_spans.add()
    ss.scope.name, ss.scope.version = "agent.py", "1.0"
    s = ss.spans.add(trace_id=bytes.fromhex(trace), span_id=bytes.fromhex(span),
                     parent_span_id=bytes.fromhex(parent), name="think",
                     kind=Span.SPAN_KIND_INTERNAL, start_time_unix_nano=START,
                     end_time_unix_nano=START + 2_500_000)
    s.attributes.extend([_kv(k.replace("_", "."), v) for k, v in attrs.items()])
    s.attributes.add(key="tokens").value.int_value = 42
    s.status.code = 2
    s.status.message = "boom"
    ev = s.events.add(time_unix_nano=START + 1000, name="step")
    ev.attributes.append(_kv("n", "1"))
    return req


def log_request(trace: str = "", span: str = "") -> ExportLogsServiceRequest:
    req = ExportLogsServiceRequest()
    rl = req.resource_logs.add()
    rl.resource.attributes.append(_kv("service.name", "my-agent"))
    sl = rl.scope_logs.add()
    rec = sl.log_records.add(time_unix_nano=START, severity_text="WARN", severity_number=13,
                             trace_id=bytes.fromhex(trace), span_id=bytes.fromhex(span),
                             flags=0x101)
    rec.body.string_value = "careful"
    rec.attributes.append(_kv("clrk.invocation", "someone-else"))
    return req


JSON_TRACES = {"resourceSpans": [{
    "resource": {"attributes": [{"key": "service.name",
                                 "value": {"stringValue": "my-agent"}}]},
    "scopeSpans": [{"scope": {"name": "agent.py"}, "spans": [{
        "traceId": TRACE, "spanId": SPAN, "parentSpanId": PARENT, "name": "think",
        "kind": 3, "startTimeUnixNano": str(START), "endTimeUnixNano": str(START + 1000),
        "attributes": [{"key": "n", "value": {"intValue": "7"}},
                       {"key": "ok", "value": {"boolValue": True}},
                       {"key": "xs", "value": {"arrayValue": {"values": [
                           {"stringValue": "a"}]}}}],
        "unknownField": 1}]}]}]}


def test_protobuf_traces_become_records_with_hex_ids() -> None:
    req = trace_request(parent=PARENT)
    msg = otlp_decode.decode("traces", req.SerializeToString(), PROTOBUF)
    [s] = otlp_decode.records(msg)
    assert s["signal"] == "span"
    assert (s["traceId"], s["spanId"], s["parentSpanId"]) == (TRACE, SPAN, PARENT)
    assert s["time"] == "2023-11-14T22:13:20.123456Z"
    assert (s["name"], s["kind"], s["service"], s["scope"]) == \
        ("think", "Internal", "my-agent", "agent.py")
    assert s["durationNs"] == 2_500_000 and (s["status"], s["statusMessage"]) == \
        ("Error", "boom")
    assert s["attributes"] == {"tokens": "42"}
    assert [e["name"] for e in s["events"]] == ["step"]


def test_json_traces_with_hex_ids_and_charset() -> None:
    body = json.dumps(JSON_TRACES).encode()
    msg = otlp_decode.decode("traces", body, "application/json; charset=utf-8")
    [s] = otlp_decode.records(msg)
    assert s["signal"] == "span"
    assert (s["traceId"], s["spanId"], s["parentSpanId"]) == (TRACE, SPAN, PARENT)
    assert s["kind"] == "Client" and s["durationNs"] == 1000
    assert s["attributes"]["n"] == "7" and s["attributes"]["ok"] == "true"
    assert json.loads(s["attributes"]["xs"]) == {"arrayValue": {"values": [
        {"stringValue": "a"}]}}


def test_json_and_protobuf_decode_to_the_same_message() -> None:
    body = json.dumps(JSON_TRACES).encode()
    from_json = otlp_decode.decode("traces", body, JSON)
    again = otlp_decode.decode("traces", from_json.SerializeToString(), PROTOBUF)
    assert again == from_json


def test_logs_in_both_encodings() -> None:
    req = log_request(TRACE, SPAN)
    [r] = otlp_decode.records(otlp_decode.decode("logs", req.SerializeToString(), PROTOBUF))
    assert r["signal"] == "log"
    assert (r["traceId"], r["spanId"], r["flags"]) == (TRACE, SPAN, 1)
    assert (r["severity"], r["severityNumber"], r["body"]) == ("WARN", 13, "careful")
    doc = {"resourceLogs": [{"scopeLogs": [{"logRecords": [{
        "observedTimeUnixNano": str(START), "traceId": TRACE, "spanId": SPAN,
        "body": {"stringValue": "hi"}}]}]}]}
    [j] = otlp_decode.records(otlp_decode.decode("logs", json.dumps(doc).encode(), JSON))
    assert j["signal"] == "log"
    assert (j["traceId"], j["body"], j["time"]) == (TRACE, "hi", "2023-11-14T22:13:20.123456Z")


def test_rows_match_the_table_columns() -> None:
    [s] = otlp_decode.records(trace_request())
    row = otlp_decode.span_row(s)  # type: ignore[arg-type]
    assert len(row) == len(TRACE_COLUMNS)
    assert row[0] == dt.datetime(2023, 11, 14, 22, 13, 20, 123456)
    [r] = otlp_decode.records(log_request())
    assert len(otlp_decode.log_row(r)) == len(LOG_COLUMNS)  # type: ignore[arg-type]


@pytest.mark.parametrize(("signal", "body", "ctype", "says"), [
    ("traces", b"\xff\xff\xff", PROTOBUF, "not an OTLP traces protobuf body"),
    ("traces", b"{not json", JSON, "not an OTLP traces JSON body"),
    ("traces", b"[1, 2]", JSON, "not an object"),
    ("traces", b'{"resourceSpans": "x"}', JSON, "not an OTLP traces JSON body"),
    ("traces", json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [
        {"traceId": "not-hex"}]}]}]}).encode(), JSON, "traceId 'not-hex' is not hex"),
    ("logs", json.dumps({"resourceLogs": [{"scopeLogs": [{"logRecords": [
        {"spanId": "abc"}]}]}]}).encode(), JSON, "spanId 'abc' is not hex"),
    ("traces", b"[" * 100_000 + b"]" * 100_000, JSON, "not an OTLP traces JSON body"),
    ("traces", b"{}", "text/plain", "content type 'text/plain'"),
])
def test_bad_bodies_say_what_is_wrong(signal: otlp_decode.Signal, body: bytes, ctype: str,
                                      says: str) -> None:
    with pytest.raises(OTLPError, match=says.replace("(", r"\(")):
        otlp_decode.decode(signal, body, ctype)


def test_deep_protobuf_nesting_is_refused() -> None:
    value = b""
    for _ in range(200):  # AnyValue.array_value(5) → ArrayValue.values(1) → AnyValue ...
        inner = b"\x0a" + _varint(len(value)) + value
        value = b"\x2a" + _varint(len(inner)) + inner
    kv = b"\x0a\x01k\x12" + _varint(len(value)) + value
    span = b"\x4a" + _varint(len(kv)) + kv  # Span.attributes (9)
    scope = b"\x12" + _varint(len(span)) + span
    resource = b"\x12" + _varint(len(scope)) + scope
    body = b"\x0a" + _varint(len(resource)) + resource
    with pytest.raises(OTLPError):
        otlp_decode.decode("traces", body, PROTOBUF)


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


# ---- the stamp (clrk.telemetry.agent_otlp) --------------------------------------------

def _stamped_span(req: ExportTraceServiceRequest) -> otlp_decode.SpanRecord:
    agent_otlp.stamp(req, WHO)
    [s] = otlp_decode.records(req)
    assert s["signal"] == "span"
    return s


def test_a_root_span_of_another_trace_moves_under_the_invocation() -> None:
    s = _stamped_span(trace_request(clrk_invocation="forged", clrk_decision="allow",
                                    app_step="1"))
    assert (s["traceId"], s["parentSpanId"], s["spanId"]) == (WHO.trace_id, WHO.span_id,
                                                              SPAN)
    assert s["attributes"] == {"app.step": "1", "tokens": "42", **WHO.attributes()}
    # service.namespace is the agent's namespace; the agent's clrk.* are gone.
    assert s["resource"] == {"service.name": "my-agent", "service.namespace": "team-a"}


def test_a_child_span_keeps_its_parent_in_the_invocations_trace() -> None:
    s = _stamped_span(trace_request(parent=PARENT))
    assert (s["traceId"], s["parentSpanId"]) == (WHO.trace_id, PARENT)
    s = _stamped_span(trace_request(trace=WHO.trace_id, parent=WHO.span_id))
    assert (s["traceId"], s["parentSpanId"]) == (WHO.trace_id, WHO.span_id)


def test_a_span_cannot_pose_as_the_invocations_span() -> None:
    s = _stamped_span(trace_request(span=WHO.span_id))
    assert s["spanId"] != WHO.span_id and len(s["spanId"]) == 16
    assert s["parentSpanId"] == WHO.span_id


def test_logs_are_stamped_with_the_invocation() -> None:
    for trace, span, want_span in (("", "", WHO.span_id), (TRACE, SPAN, SPAN)):
        req = log_request(trace, span)
        agent_otlp.stamp(req, WHO)
        [r] = otlp_decode.records(req)
        assert r["signal"] == "log"
        assert (r["traceId"], r["spanId"]) == (WHO.trace_id, want_span)
        assert r["attributes"] == WHO.attributes()
        assert r["resource"]["service.namespace"] == "team-a"


def test_rows_of_an_export_are_stamped() -> None:
    body = json.dumps(JSON_TRACES).encode()
    [row] = agent_otlp.rows("traces", body, JSON, WHO)
    assert row[TRACE_COLUMNS.index("TraceId")] == WHO.trace_id
    assert row[TRACE_COLUMNS.index("ParentSpanId")] == PARENT
    attrs = row[TRACE_COLUMNS.index("SpanAttributes")]
    assert attrs["clrk.invocation"] == WHO.invocation
    [log] = agent_otlp.rows("logs", log_request().SerializeToString(), PROTOBUF, WHO)
    assert log[LOG_COLUMNS.index("TraceId")] == WHO.trace_id
