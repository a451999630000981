"""Calls Envoy meters alone: the usage it extracts is what the codecs read from the
whole answer, the worker's record of a logged call, the files the Lua filter reads,
and the filters of a provider host's chain."""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any

import pytest

from clrk.egress.envoy import connect, metering
from clrk.egress.envoy.http import STRIPPED, TerminatedHost, terminated_chain
from clrk.egress.metered import Meter, MeterFiles, record_fields
from clrk.egress.providers import codec_for

ANSWERS: list[tuple[str, str, dict[str, Any]]] = [
    ("anthropic", "/v1/messages", {
        "id": "msg_1", "model": "claude-x", "content": [{"type": "text", "text": "hi"}],
        "usage": {"input_tokens": 12, "output_tokens": 24, "cache_read_input_tokens": 3,
                  "cache_creation_input_tokens": 5}}),
    ("openai", "/v1/chat/completions", {
        "id": "chatcmpl-1", "model": "gpt-x", "choices": [],
        "usage": {"prompt_tokens": 13, "completion_tokens": 5, "total_tokens": 18,
                  "prompt_tokens_details": {"cached_tokens": 4},
                  "completion_tokens_details": {"reasoning_tokens": 2}}}),
    ("openai", "/v1/responses", {
        "id": "resp_1", "model": "gpt-r", "output": [],
        "usage": {"input_tokens": 13, "output_tokens": 5,
                  "input_tokens_details": {"cached_tokens": 1},
                  "output_tokens_details": {"reasoning_tokens": 3}}}),
    ("azure-openai", "/openai/deployments/dep-1/chat/completions?api-version=1", {
        "id": "chatcmpl-2", "model": "gpt-4o", "choices": [],
        "usage": {"prompt_tokens": 7, "completion_tokens": 1}}),
    ("google", "/v1beta/models/gemini-x:generateContent", {
        "candidates": [], "modelVersion": "gemini-x-001", "responseId": "r1",
        "usageMetadata": {"promptTokenCount": 9, "candidatesTokenCount": 4,
                          "cachedContentTokenCount": 2, "thoughtsTokenCount": 6}}),
]


def _at(doc: dict[str, Any], path: str) -> Any:
    for key in path.split("."):
        if not isinstance(doc, dict) or key not in doc:
            return None
        doc = doc[key]
    return doc


def _logged(answer: dict[str, Any]) -> dict[str, Any]:
    """What json_to_metadata puts in the access log: the values at the usage paths."""
    return {p: v for p in metering.USAGE_PATHS if (v := _at(answer, p)) is not None}


@pytest.mark.parametrize(("provider", "path", "answer"), ANSWERS)
def test_envoys_fields_give_the_usage_of_the_whole_answer(
        provider: str, path: str, answer: dict[str, Any]) -> None:
    whole = codec_for(provider, path)
    whole.parse_request(b'{"model": "m"}')
    whole.response_started("application/json", {})
    whole.feed(json.dumps(answer).encode())
    expected = whole.finish()
    assert expected.known
    fields = codec_for(provider, path)
    fields.parse_request(b'{"model": "m"}')
    assert fields.read_fields(_logged(answer)) == expected


def line(**item: Any) -> dict[str, Any]:
    return {"provider": "anthropic", "path": "/v1/messages", "status": 200,
            "request": {"model": "claude-x", "stream": False}, "span": "00f067aa0ba902b7",
            "response_type": "application/json", **item}


def test_the_record_of_a_metered_call() -> None:
    fields = record_fields(line(usage=_logged(ANSWERS[0][2])))
    assert fields["span_id"] == "00f067aa0ba902b7"
    assert fields["attributes"] == {
        "gen_ai.provider.name": "anthropic", "gen_ai.operation.name": "chat",
        "gen_ai.request.stream": "false", "gen_ai.request.model": "claude-x",
        "gen_ai.response.model": "claude-x", "gen_ai.response.id": "msg_1",
        "gen_ai.usage.input_tokens": "12", "gen_ai.usage.output_tokens": "24",
        "gen_ai.usage.cache_read.input_tokens": "3",
        "gen_ai.usage.cache_creation.input_tokens": "5",
        "clrk.usage.extracted": "true", "clrk.metered_by": "envoy",
        # Who bills it: the API server prices it when it records the call.
        "clrk.cost.provider": "anthropic", "clrk.cost.model": "claude-x"}
    google = record_fields(line(provider="google", request=None, usage=None,
                                path="/v1beta/models/gemini-x:generateContent"))
    assert google["attributes"]["gen_ai.request.model"] == "gemini-x"  # from the path
    assert google["attributes"]["gen_ai.operation.name"] == "generate_content"


def test_why_a_metered_call_has_no_usage() -> None:
    refused = record_fields(line(status=429, usage=None))["attributes"]
    assert refused["clrk.usage.missing_reason"] == "status 429"
    other = record_fields(line(response_type="text/html", usage=None))["attributes"]
    assert other["clrk.usage.extracted"] == "false"
    assert "JSON answers" in other["clrk.usage.missing_reason"]
    assert "text/html" in other["clrk.usage.missing_reason"]
    reset = record_fields(line(status=0, usage=None, span=None))
    assert "clrk.usage.extracted" not in reset["attributes"]  # no answer at all
    assert "span_id" not in reset  # the worker gives it one, the same for every copy


def test_meter_and_trace_files(tmp_path: Path) -> None:
    files = MeterFiles(tmp_path / "m")
    first = files.meter_file("gw", "api.anthropic.com")
    second = files.meter_file("gw", "api.openai.com")
    files.sync({first: Meter("AIProviderRoute/a", "anthropic", "x-api-key", "sk-1",
                             (b"sk-1-long", b"c2stMS1sb25n")),
                second: Meter("AIProviderRoute/o", "openai")})
    assert first.read_text() == \
        "AIProviderRoute/a\nanthropic\nx-api-key\nsk-1\nsk-1-long\nc2stMS1sb25n\n"
    assert second.read_text() == "AIProviderRoute/o\nopenai\n\n\n"
    assert stat.S_IMODE(first.stat().st_mode) == 0o600
    files.sync({second: Meter("AIProviderRoute/o", "openai")})
    assert not first.exists() and second.exists()
    files.trace("10.200.0.2", "4bf92f3577b34da6a3ce929d0e0e4736")
    assert (files.traces / "10.200.0.2").read_text() == "4bf92f3577b34da6a3ce929d0e0e4736\n"
    files.trace("10.200.0.2", "")
    assert not (files.traces / "10.200.0.2").exists()


def _chain(meter: metering.Metering | None) -> dict[str, Any]:
    return terminated_chain(TerminatedHost("ns/gw", "api.anthropic.com", "198.18.0.1", 443,
                                           None, True, "tls/api", meter=meter))


def test_a_provider_chain_lets_envoy_serve_and_meter_calls(tmp_path: Path) -> None:
    meter = metering.Metering(tmp_path / "meter" / "gw" / "api.anthropic.com",
                              tmp_path / "traces", tmp_path / "access.log")
    manager = _chain(meter)["filters"][0]["typed_config"]
    filters = manager["http_filters"][1:]  # after the CONNECT refusal
    assert [f["name"] for f in filters] == [
        "envoy.filters.http.json_to_metadata", "envoy.filters.http.lua",
        "envoy.filters.http.ext_proc (marked)",
        "envoy.filters.http.json_to_metadata (unmarked)", "envoy.filters.http.router"]
    lua = filters[1]["typed_config"]["default_source_code"]["inline_string"]
    assert json.dumps(str(meter.meter_file)) in lua and json.dumps(str(meter.traces)) in lua
    assert "function envoy_on_response" in lua and "function scrub_response" in lua
    ext_proc = filters[2]["typed_config"]
    assert ext_proc["extension_config"]["typed_config"]["processing_mode"][
        "request_body_mode"] == "BUFFERED"
    predicate = ext_proc["xds_matcher"]["matcher_list"]["matchers"][0]["predicate"]
    assert predicate["not_matcher"]["single_predicate"]["input"]["typed_config"][
        "header_name"] == metering.PYTHON_HEADER  # skipped unless marked
    usage = filters[3]["typed_config"]["extension_config"]["typed_config"]["response_rules"]
    assert {".".join(s["key"] for s in r["selectors"]) for r in usage["rules"]} == \
        set(metering.USAGE_PATHS)
    log = manager["access_log"][0]
    assert log["filter"] == connect.excluding(metering.LOG_FILTER)
    assert log["typed_config"]["path"] == str(meter.access_log)
    assert log["typed_config"]["log_format"]["json_format"]["usage"] == \
        "%DYNAMIC_METADATA(clrk.usage)%"
    assert metering.PYTHON_HEADER in STRIPPED  # never upstream


def test_without_metering_every_call_goes_to_the_policy_service() -> None:
    manager = _chain(None)["filters"][0]["typed_config"]
    assert [f["name"] for f in manager["http_filters"]] == [
        "envoy.filters.http.rbac", "envoy.filters.http.ext_proc", "envoy.filters.http.router"]
    assert "access_log" not in manager
    assert manager["http_filters"][1]["typed_config"]["allow_mode_override"] is True
