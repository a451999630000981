#!/usr/bin/env python3
"""mcp-tools' agent: connects to an MCP server with the official MCP SDK, lists its
tools and calls the ones it is sent. It trusts nothing about what it may call: the
gateway's MCPRoute and ToolPolicy decide, and the agent reports what happened."""
import asyncio
import json
import os
import sys

from mcp.client.client import Client

data = json.load(sys.stdin).get("data") or {}
SERVER = os.environ.get("MCP_SERVER", "https://mcp.example.com/mcp/")


async def main() -> None:
    calls: list[dict[str, str]] = []
    async with Client(SERVER) as client:
        tools = sorted(t.name for t in (await client.list_tools()).tools)
        for call in data.get("calls") or []:
            try:
                result = await client.call_tool(call["tool"], call.get("arguments") or {})
                text = " ".join(getattr(c, "text", "") for c in result.content)
                outcome = {"tool": call["tool"], "error" if result.is_error else "ok": text}
            except Exception as err:  # the gateway's JSON-RPC refusal
                outcome = {"tool": call["tool"], "refused": str(err)}
            calls.append(outcome)
    print(json.dumps({"tools": tools, "calls": calls}))


asyncio.run(main())
