#!/usr/bin/env python3
"""The quickstart's echo-bot: every 5 seconds, ask Claude to say hello. It holds no API
key; the egress gateway injects it. Without internet (or without a real key) the refused
calls are printed here and recorded in the traces all the same."""
import json
import time
import urllib.error
import urllib.request

BODY = json.dumps({"model": "claude-haiku-4-5", "max_tokens": 64,
                   "messages": [{"role": "user", "content": "Say hello."}]}).encode()

while True:
    request = urllib.request.Request(
        "https://api.anthropic.com/v1/messages", data=BODY, method="POST",
        headers={"anthropic-version": "2023-06-01", "content-type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as r:
            print(r.status, r.read().decode(errors="replace"), flush=True)
    except urllib.error.HTTPError as err:
        print(err.code, err.read().decode(errors="replace"), flush=True)
    except OSError as err:
        print("call failed:", err, flush=True)
    time.sleep(5)
