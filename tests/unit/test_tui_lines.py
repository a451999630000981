"""What the dev TUI computes and writes without I/O: real per-minute rates over a
sliding minute, the quickstart's otel-logs line, span details, agents' phases."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import pytest

from clrk.cli.tui.lines import call_of, is_call_log, log_line, phase, span_details
from clrk.cli.tui.rates import Call, Window, cost

QUICKSTART = re.compile(
    r"^\d\d:\d\d:\d\d\.\d{3} POST api\.anthropic\.com/v1/messages 200 540ms req=312B "
    r"resp=1024B provider=anthropic model=claude-haiku-4-5 input_tokens=12 "
    r"output_tokens=24 route=default/anthropic trace=a1b2c3d4$")


def test_rates_are_per_minute_over_a_sliding_minute_not_totals() -> None:
    w = Window()
    for at in (0.0, 10.0, 30.0, 59.0):
        w.add(Call(at, 100.0 * (1 + at / 10), 10, 20, 0.5))
    r = w.rates(now=60.0)
    assert (r.requests, r.tokens_in, r.tokens_out, r.cost) == (4, 40, 80, 2.0)
    assert r.p50_ms == pytest.approx(300.0) and r.p95_ms is not None and r.p95_ms > 600
    later = w.rates(now=85.0)  # the calls at 0 and 10 s have left the minute
    assert (later.requests, later.tokens_in) == (2, 20)
    assert w.total_tokens == 120 and w.total_cost == 2.0
    assert Window().rates(now=0).p50_ms is None


def test_cost_at_list_prices_and_none_for_unknown_models() -> None:
    assert cost("claude-haiku-4-5-20251001", 1_000_000, 1_000_000) == pytest.approx(6.0)
    assert cost("gpt-4o-mini", 1_000_000, 0) == pytest.approx(0.15)  # not gpt-4o's
    assert cost("my-local-model", 10, 10) is None


def _call(**attrs: str) -> dict[str, Any]:
    base = {"http.request.method": "POST", "gen_ai.provider.name": "anthropic",
            "gen_ai.request.model": "claude-haiku-4-5", "gen_ai.usage.input_tokens": "12",
            "gen_ai.usage.output_tokens": "24", "clrk.route": "default/anthropic",
            "clrk.agent.name": "echo-bot"}
    return {**base, **attrs}


def test_the_otel_logs_line_is_the_quickstarts() -> None:
    record = {"signal": "log", "scope": "clrk.egress", "traceId": "a1b2c3d4" + "0" * 24,
              "time": "2026-12-03T15:04:05.123456Z", "attributes": _call(),
              "body": "POST api.anthropic.com/v1/messages 200 540ms req=312B resp=1024B "
                      "provider=anthropic model=claude-haiku-4-5 input_tokens=12 "
                      "output_tokens=24 route=default/anthropic"}
    assert is_call_log(record) and QUICKSTART.match(log_line(record)), log_line(record)
    assert not is_call_log({**record, "scope": "clrk.agent"})  # an agent's own output


def test_a_span_is_a_call_with_tokens_and_cost_and_expands_to_its_attributes() -> None:
    span = {"signal": "span", "scope": "clrk.egress", "time": "2026-12-03T15:04:05Z",
            "durationNs": 540_000_000, "attributes": _call(),
            "events": [{"name": "http.request",
                        "attributes": {"http.request.header.x-api-key": "[redacted]"}}]}
    call = call_of(span)
    assert call is not None and (call.duration_ms, call.tokens_in, call.tokens_out) == (
        540.0, 12, 24)
    assert call.cost == pytest.approx((12 * 1 + 24 * 5) / 1e6)
    assert call.at == dt.datetime(2026, 12, 3, 15, 4, 5, tzinfo=dt.UTC).timestamp()
    details = span_details(span)
    assert "gen_ai.usage.output_tokens: 24" in details
    assert details[-2:] == ["event http.request",
                            "  http.request.header.x-api-key: [redacted]"]
    assert call_of({**span, "scope": "clrk"}) is None  # an invocation is not a call


def _daemon(**status: Any) -> dict[str, Any]:
    return {"kind": "DaemonAgent", "metadata": {"generation": 1}, "status": {
        "observedGeneration": 1, "conditions": [{"type": "Accepted", "status": "True"}],
        **status}}


def test_phases_in_a_word_or_two() -> None:
    up = (dt.datetime.now(dt.UTC) - dt.timedelta(minutes=4, seconds=5)).isoformat()
    assert phase(_daemon(phase="Running", upSince=up, restartCount=2)) == "up 4m \u21bb2"
    assert phase(_daemon(phase="Running", upSince=up)) == "up 4m"
    assert phase(_daemon(phase="CrashLoopBackOff")) == "crashloop"
    task = {**_daemon(), "kind": "TaskAgent"}
    assert phase(task) == "idle"
    assert phase(task, in_flight=3) == "active \u00d73"
    pull = {**task, "status": {"conditions": [
        {"type": "ImageReady", "status": "False", "reason": "ImagePullFailed"}]}}
    assert phase(pull) == "image pull failed"
