#!/usr/bin/env python3
"""gemini-bot: a TaskAgent that answers the `prompt` it is sent with Gemini, through
the official google-genai SDK. It holds no key: the gateway injects `x-goog-api-key`."""
import json
import os
import sys

from google import genai

envelope = json.load(sys.stdin)
prompt = (envelope.get("data") or {}).get("prompt") or "Say hello."
client = genai.Client(api_key="injected-by-the-gateway")
answer = client.models.generate_content(model=os.environ.get("MODEL", "gemini-2.5-flash"),
                                        contents=prompt)
usage = answer.usage_metadata
print(json.dumps({"answer": answer.text,
                  "tokens": usage.total_token_count if usage else None}))
