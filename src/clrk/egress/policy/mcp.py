"""MCP over Streamable HTTP at the proxy: which JSON-RPC calls an MCPRoute rule lets
through, the ToolPolicy on ``tools/call`` (allowed and denied tools, deny wins; calls
per execution; per-tool rate limits), and ``tools/list`` answers cut down to the tools
the agent may call, in JSON and in SSE responses."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from clrk.egress.policy.refusal import Refusal
from clrk.egress.providers.sse import NOT_JSON, EventStream, WholeJson
from clrk.egress.routing import MCPRule, glob_or_regex

DENIED = -32001  # a server-defined JSON-RPC error code: refused by policy


@dataclass(frozen=True)
class Call:
    method: str
    id: Any
    tool: str | None

    @property
    def is_request(self) -> bool:
        return self.id is not None


def parse(body: bytes | None) -> list[Call] | None:
    """The JSON-RPC messages in a request body (None: not JSON-RPC)."""
    try:
        doc = json.loads(body) if body else None
    except ValueError:
        return None
    items = doc if isinstance(doc, list) else [doc]
    calls = []
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("method"), str):
            continue
        params = item.get("params")
        tool = params.get("name") if isinstance(params, dict) else None
        tool = tool if item["method"] == "tools/call" else None
        calls.append(Call(item["method"], item.get("id"), tool if isinstance(tool, str)
                          else None))
    return calls or None


def tool_refusal(rule: MCPRule, tool: str) -> str | None:
    """Why the rule's ToolPolicy refuses the tool (None: it may be called)."""
    policy = rule.tool_policy
    denied = policy.get("deniedTools") or []
    if any(glob_or_regex(p, tool) for p in denied):
        return f"tool {tool!r} is denied by MCPRoute {rule.route}"
    allowed = policy.get("allowedTools")
    if allowed is not None and not any(glob_or_regex(p, tool) for p in allowed):
        return f"tool {tool!r} is not among the allowed tools of MCPRoute {rule.route}"
    if rule.tools and not any(glob_or_regex(p, tool) for p in rule.tools):
        return f"tool {tool!r} is not matched by MCPRoute {rule.route}"
    return None


def rule_for(rules: list[MCPRule], call: Call) -> MCPRule | None:
    """The first rule whose match covers the call's method (and tool, for tools/call)."""
    return next((r for r in rules if r.covers(call.method, call.tool)), None)


def error_body(calls: list[Call], message: str) -> bytes:
    errors = [{"jsonrpc": "2.0", "id": c.id, "error": {"code": DENIED, "message": message}}
              for c in calls if c.is_request]
    return json.dumps(errors if len(errors) != 1 else errors[0]).encode()


def refuse(calls: list[Call], message: str) -> Refusal:
    """A JSON-RPC error for each request (HTTP 200, as an MCP server would answer);
    a lone notification gets 403."""
    if not any(c.is_request for c in calls):
        return Refusal(403, message)
    return Refusal(200, message, body=error_body(calls, message),
                   content_type="application/json")


def _filter(doc: Any, permitted: Any) -> bool:
    result = doc.get("result") if isinstance(doc, dict) else None
    if not isinstance(result, dict) or not isinstance(result.get("tools"), list):
        return False
    tools = result["tools"]
    kept = [t for t in tools if isinstance(t, dict) and permitted(str(t.get("name", "")))]
    result["tools"] = kept
    return len(kept) != len(tools)


@dataclass
class ToolsListFilter:
    """Rewrites a ``tools/list`` answer as it streams: SSE event by event, JSON whole."""
    permitted: Any  # Callable[[str], bool]
    sse: bool = False
    removed: int = 0
    _json: WholeJson = field(default_factory=WholeJson)
    _events: EventStream = field(default_factory=EventStream)

    def feed(self, chunk: bytes, end: bool) -> bytes:
        if not self.sse:
            whole = self._json.feed(chunk, end)
            if whole is None:
                return b""
            raw, doc = whole
            if doc is NOT_JSON:
                return raw
            before = _count(doc)
            if isinstance(doc, list):
                for item in doc:
                    _filter(item, self.permitted)
            else:
                _filter(doc, self.permitted)
            self.removed += before - _count(doc)
            return json.dumps(doc).encode()
        out = b""
        for name, data in self._events.read(chunk, end):
            try:
                doc = json.loads(data)
                before = _count(doc)
                if _filter(doc, self.permitted):
                    self.removed += before - _count(doc)
                    data = json.dumps(doc)
            except ValueError:
                pass
            out += (f"event: {name}\n" if name != "message" else "").encode()
            out += b"".join(b"data: " + line.encode() + b"\n" for line in data.split("\n"))
            out += b"\n"
        return out


def _count(doc: Any) -> int:
    if isinstance(doc, list):
        return sum(_count(d) for d in doc)
    result = doc.get("result") if isinstance(doc, dict) else None
    tools = result.get("tools") if isinstance(result, dict) else None
    return len(tools) if isinstance(tools, list) else 0
