#!/usr/bin/env python3
"""fallback-router's agent: `n` calls to Claude with the official SDK, its own retries
off, reporting each call's status. Any resilience it shows is the gateway's: its
primary Backend is down and the FallbackRoutingPolicy sends the calls on."""
import json
import sys

import anthropic

data = json.load(sys.stdin).get("data") or {}
client = anthropic.Anthropic(api_key="injected-by-the-gateway", max_retries=0)
statuses = []
for _ in range(int(data.get("n", 3))):
    try:
        client.messages.create(model="claude-haiku-4-5", max_tokens=32,
                               messages=[{"role": "user", "content": "Say hello."}])
        statuses.append(200)
    except anthropic.APIStatusError as err:
        statuses.append(err.status_code)
print(json.dumps({"statuses": statuses}))
