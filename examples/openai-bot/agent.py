#!/usr/bin/env python3
"""openai-bot: a DaemonAgent that asks OpenAI for a haiku every INTERVAL seconds with
the official OpenAI SDK, and prints what came back (an answer, a refusal, or why the
call could not be made). It holds no real key: the gateway injects it, where there is
a gateway (examples/openai-bot-mitm); here there is none."""
import os
import time

import openai

client = openai.OpenAI(api_key=os.environ.get("OPENAI_API_KEY", "injected-by-the-gateway"),
                       max_retries=0, timeout=30)
MODEL = os.environ.get("MODEL", "gpt-4o-mini")
INTERVAL = float(os.environ.get("INTERVAL", "10"))

while True:
    try:
        answer = client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "A haiku about sandboxes."}])
        usage = answer.usage.total_tokens if answer.usage else "?"
        print(f"answer: {answer.choices[0].message.content} (tokens: {usage})", flush=True)
    except openai.APIStatusError as err:
        print(f"refused: {err.status_code} {err.message}", flush=True)
    except openai.APIConnectionError as err:
        print(f"call failed: {err.__cause__ or err}", flush=True)
    time.sleep(INTERVAL)
