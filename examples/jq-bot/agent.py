#!/usr/bin/env python3
"""jq-bot: a TaskAgent that asks Claude (streaming) to write a jq filter answering the
`question` it is sent about its `input`, then runs the real `jq` on the input and
returns the filter and its result. The LLM only writes the filter; jq computes the
answer."""
import json
import os
import subprocess
import sys

import anthropic

data = json.load(sys.stdin).get("data") or {}
question, document = data.get("question", "."), data.get("input")
client = anthropic.Anthropic(api_key="injected-by-the-gateway", max_retries=1)
with client.messages.stream(
        model=os.environ.get("MODEL", "claude-haiku-4-5"), max_tokens=200,
        system="Answer with one jq filter and nothing else: no prose, no code fence.",
        messages=[{"role": "user", "content": f"Input: {json.dumps(document)[:4000]}\n"
                                              f"Question: {question}"}]) as stream:
    jq_filter = stream.get_final_text().strip().strip("`")
run = subprocess.run(["jq", "-c", jq_filter], input=json.dumps(document),
                     capture_output=True, text=True, timeout=10, check=False)
if run.returncode != 0:
    print(f"jq rejected the filter {jq_filter!r}: {run.stderr.strip()}", file=sys.stderr)
    sys.exit(2)
print(json.dumps({"filter": jq_filter, "result": json.loads(run.stdout or "null")}))
