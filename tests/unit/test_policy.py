"""The policy service's pure parts: MCP tool decisions and tools/list filtering, rate
windows, redaction of records, the SSE parser, sourceAgents, day token counters."""

from __future__ import annotations

import base64
import datetime as dt
import json
from pathlib import Path

from clrk.controlplane.token_budgets import TokenCounters, today
from clrk.egress.l4 import admits
from clrk.egress.policy import mcp
from clrk.egress.policy.limits import RateWindows, retry_after
from clrk.egress.policy.record import REDACTED, Capture, HttpRecord
from clrk.egress.providers.sse import EventStream
from clrk.egress.routing import MCPRule


def rule(**policy: object) -> MCPRule:
    return MCPRule("tools", 0, ("https://mcp.example.com/*",), ("github_*",), (),
                   dict(policy))


def test_tool_policy_deny_wins_and_regex() -> None:
    r = rule(allowedTools=["github_get_pr", "github_delete_repo"], deniedTools=["/.*delete.*/"])
    assert mcp.tool_refusal(r, "github_get_pr") is None
    assert "denied" in (mcp.tool_refusal(r, "github_delete_repo") or "")
    assert "not among the allowed" in (mcp.tool_refusal(r, "github_search") or "")
    assert "not matched" in (mcp.tool_refusal(rule(), "shell_exec") or "")
    assert rule().serves("https://mcp.example.com/mcp") and not rule().serves("https://x/mcp")


def test_json_rpc_parsing_and_refusals() -> None:
    calls = mcp.parse(json.dumps([{"jsonrpc": "2.0", "id": 7, "method": "tools/call",
                                   "params": {"name": "t"}},
                                  {"jsonrpc": "2.0", "method": "notifications/x"}]).encode())
    assert calls is not None and calls[0].tool == "t" and not calls[1].is_request
    refusal = mcp.refuse(calls, "no")
    assert refusal.status == 200 and json.loads(refusal.body or b"")["id"] == 7
    assert mcp.refuse(calls[1:], "no").status == 403  # a lone notification
    assert mcp.parse(b"not json") is None


def test_tools_list_filtered_across_sse_chunks() -> None:
    answer = {"jsonrpc": "2.0", "id": 1, "result": {"tools": [
        {"name": "keep"}, {"name": "drop"}, {"name": "keep2"}]}}
    stream = f"event: message\ndata: {json.dumps(answer)}\n\n".encode()
    f = mcp.ToolsListFilter(lambda t: t.startswith("keep"), sse=True)
    out = b"".join(f.feed(stream[i:i + 5], i + 5 >= len(stream))
                   for i in range(0, len(stream), 5))
    events = list(EventStream().feed(out))
    assert [t["name"] for t in json.loads(events[0][1])["result"]["tools"]] == \
        ["keep", "keep2"]
    assert f.removed == 1
    j = mcp.ToolsListFilter(lambda t: t == "keep")
    assert j.feed(json.dumps(answer).encode()[:10], False) == b""
    whole = j.feed(json.dumps(answer).encode()[10:], True)
    assert [t["name"] for t in json.loads(whole)["result"]["tools"]] == ["keep"]


def test_rate_windows() -> None:
    w = RateWindows()
    assert w.take("k", 2, 10, now=0) is None and w.take("k", 2, 10, now=1) is None
    wait = w.take("k", 2, 10, now=2)
    assert wait == 8 and retry_after(wait) == "8"
    assert w.take("k", 2, 10, now=10.5) is None  # a new window


def test_records_redact_headers_values_and_bodies() -> None:
    r = HttpRecord(dt.datetime.now(dt.UTC), "POST", "api.example.com", 443,
                   "/v1?key=sk-secret", "ns/gw",
                   request_headers={"authorization": "Bearer x", "x-mine": "a sk-secret b",
                                    "x-custom": "ok", ":path": "/v1"},
                   secrets=["sk-secret"])
    r.redact.add("x-custom")
    r.request_body = Capture(8)
    r.request_body.add(b"sk-secret and more")
    item = r.item(None, "0" * 16)
    headers = item["events"][0]["attributes"]
    assert headers["http.request.header.authorization"] == REDACTED
    assert headers["http.request.header.x-custom"] == REDACTED
    assert headers["http.request.header.x-mine"] == f"a {REDACTED} b"
    assert "http.request.header.:path" not in headers
    assert "sk-secret" not in json.dumps(item)
    assert base64.b64decode(headers["http.request.body"]) == b"sk-secre"  # cut at 8 bytes
    assert item["attributes"]["clrk.http.request.body.truncated"] == "true"


def test_sse_parser() -> None:
    events = list(EventStream().feed(b": comment\nevent: a\ndata: 1\ndata: 2\n\ndata: 3\r\n\r\n"))
    assert events == [("a", "1\n2"), ("message", "3")]


def test_source_agents() -> None:
    assert admits((), None)
    assert admits(("TaskAgent/a",), ("TaskAgent", "a"))
    assert admits(("*/a",), ("DaemonAgent", "a"))
    assert not admits(("TaskAgent/a",), ("DaemonAgent", "a"))
    assert not admits(("TaskAgent/a",), None)


def test_day_token_counters_survive_reopening(tmp_path: Path) -> None:
    path, day = tmp_path / "tokens.db", today()
    counters = TokenCounters(path)
    assert counters.add("ns", "route", "gw", day, 30) == 30
    assert counters.add("ns", "route", "gw", day, 6) == 36
    counters.close()
    again = TokenCounters(path)
    assert again.used("ns", "route", "gw", day) == 36
    assert again.used("ns", "route", "other", day) == 0
    again.close()
