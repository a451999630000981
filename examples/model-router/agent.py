#!/usr/bin/env python3
"""model-router's agent: asks for the expensive model `n` times and reports which model
actually answered each call. The agent is naive on purpose: the routing (a 90/10 split,
the cheaper model substituted on the 90) is the gateway's, by policy."""
import collections
import json
import sys

import anthropic

data = json.load(sys.stdin).get("data") or {}
client = anthropic.Anthropic(api_key="injected-by-the-gateway", max_retries=1)
served: collections.Counter[str] = collections.Counter()
for _ in range(int(data.get("n", 10))):
    reply = client.messages.create(model=data.get("model", "claude-opus-4-1"), max_tokens=64,
                                   messages=[{"role": "user", "content": "One word: hi."}])
    served[reply.model] += 1
print(json.dumps({"asked": data.get("model", "claude-opus-4-1"), "served": served}))
