"""The OTLP/HTTP receiver of `clrk dev` and the tee's encoding: what clrk stores comes
out of the receiver as the same records, in protobuf or JSON, and bad bodies are told
why."""

from __future__ import annotations

import asyncio
import datetime as dt

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span
from starlette.testclient import TestClient

from clrk.telemetry import otlp_export
from clrk.telemetry.otlp_decode import LogRecord, SpanRecord, log_row, records, span_row
from clrk.telemetry.otlp_receive import OTLPReceiver

T0 = dt.datetime(2026, 12, 3, 15, 4, 5, 123000)


def _span_row() -> list[object]:
    return [T0, "a1b2c3d4" * 4, "0102030405060708", "1112131415161718", "",
            "POST api.anthropic.com/v1/messages", "Client", "echo-bot",
            {"service.namespace": "default"}, "clrk.egress", "",
            {"http.request.method": "POST", "gen_ai.usage.input_tokens": "12"},
            540_000_000, "Ok", "", [T0], ["http.request"],
            [{"http.request.header.x-api-key": "[redacted]"}], [], [], [], []]


def _log_row() -> list[object]:
    return [T0, "a1b2c3d4" * 4, "0102030405060708", 0, "INFO", 9, "echo-bot",
            "POST api.anthropic.com/v1/messages 200 540ms", "",
            {"service.name": "echo-bot", "k8s.namespace.name": "default"}, "", "clrk.egress",
            "", {}, {"clrk.route": "default/anthropic"}, "egress.http"]


def test_the_tee_encoding_round_trips_through_the_receiver() -> None:
    """Rows → the exporter's OTLP JSON → the receiver → records → the same rows."""
    receiver = OTLPReceiver()
    client = TestClient(receiver.app())
    spans = otlp_export._grouped([otlp_export.span_json(_span_row())], "resourceSpans",
                                 "scopeSpans", "")
    logs = otlp_export._grouped([otlp_export.log_json(_log_row())], "resourceLogs",
                                "scopeLogs", "")
    assert client.post("/v1/traces", json=spans).status_code == 200
    assert client.post("/v1/logs", json=logs).status_code == 200
    (_, span), (_, log) = list(receiver.window)
    assert span["signal"] == "span" and span["traceId"] == "a1b2c3d4" * 4
    assert span["resource"] == {"service.name": "echo-bot", "service.namespace": "default"}
    assert span["events"][0]["attributes"] == {"http.request.header.x-api-key": "[redacted]"}
    assert span_row(SpanRecord(**span))[:15] == [  # type: ignore[typeddict-item]
        *_span_row()[:8], {"service.namespace": "default", "service.name": "echo-bot"},
        *_span_row()[9:15]]
    assert log["body"] == "POST api.anthropic.com/v1/messages 200 540ms"
    assert log_row(LogRecord(**log))[14:] == [  # type: ignore[typeddict-item]
        {"clrk.route": "default/anthropic"}, "egress.http"]


def test_protobuf_bodies_get_protobuf_answers() -> None:
    receiver = OTLPReceiver()
    client = TestClient(receiver.app())
    request = ExportTraceServiceRequest()
    rs = request.resource_spans.add()
    rs.resource.attributes.append(KeyValue(key="service.name",
                                           value=AnyValue(string_value="agent")))
    span = rs.scope_spans.add().spans.add()
    span.CopyFrom(Span(trace_id=bytes(range(16)), span_id=bytes(range(8)), name="work",
                       kind=Span.SPAN_KIND_INTERNAL, start_time_unix_nano=10**18,
                       end_time_unix_nano=10**18 + 5_000_000,
                       attributes=[KeyValue(key="n", value=AnyValue(int_value=3))]))
    r = client.post("/v1/traces", content=request.SerializeToString(),
                    headers={"content-type": "application/x-protobuf"})
    assert r.status_code == 200 and r.headers["content-type"] == "application/x-protobuf"
    ExportTraceServiceResponse().ParseFromString(r.content)
    [(seq, record)] = list(receiver.window)
    assert seq == 1 and record["traceId"] == bytes(range(16)).hex()
    assert record["kind"] == "Internal" and record["durationNs"] == 5_000_000
    assert record["attributes"] == {"n": "3"} and record["service"] == "agent"
    assert records(ExportLogsServiceRequest()) == []


def test_bad_bodies_are_told_why() -> None:
    client = TestClient(OTLPReceiver().app())
    bad_json = client.post("/v1/traces", content=b"{", headers={
        "content-type": "application/json"})
    assert bad_json.status_code == 400 and "not an OTLP traces JSON body" in bad_json.text
    bad_id = client.post("/v1/traces", json={"resourceSpans": [{"scopeSpans": [
        {"spans": [{"traceId": "zz"}]}]}]})
    assert bad_id.status_code == 400 and "traceId 'zz' is not hex" in bad_id.text
    bad_proto = client.post("/v1/logs", content=b"\xff\xff", headers={
        "content-type": "application/x-protobuf"})
    assert bad_proto.status_code == 400 and "protobuf" in bad_proto.text
    other = client.post("/v1/logs", content=b"x", headers={"content-type": "text/plain"})
    assert other.status_code == 415 and "application/x-protobuf" in other.text
    assert client.get("/v1/logs").status_code == 405
    big = client.post("/v1/logs", content=b" " * (4 * 1024 * 1024 + 1),
                      headers={"content-type": "application/json"})
    assert big.status_code == 413


async def test_followers_get_what_is_kept_then_each_new_record() -> None:
    receiver = OTLPReceiver(window=3)
    receiver.accept([{"n": i} for i in range(5)])  # 1 and 2 fall out of the window
    got: list[tuple[int, dict[str, object]]] = []

    async def follow() -> None:
        async for entry in receiver.follow(after=3):
            got.append(entry)
            if len(got) == 3:
                return

    task = asyncio.create_task(follow())
    await asyncio.sleep(0.05)
    receiver.accept([{"n": 5}])
    await asyncio.wait_for(task, 5)
    assert got == [(4, {"n": 3}), (5, {"n": 4}), (6, {"n": 5})]
