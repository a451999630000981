#!/usr/bin/env python3
"""The quickstart's word-count agent. Stdin delivery (the default) reads the CloudEvents
envelope from stdin and prints the reply; Metadata delivery fetches the envelope from
$CLRK_METADATA_URL/event and posts the reply to $CLRK_METADATA_URL/response.
urllib is imported only in Metadata mode: it costs a stdin-mode start ~300 ms in gVisor."""
import json
import os
import sys

metadata = os.environ.get("CLRK_METADATA_URL")
raw = sys.stdin.read()
if raw.strip() or not metadata:
    envelope = json.loads(raw)
else:
    import urllib.request

    with urllib.request.urlopen(f"{metadata}/event", timeout=30) as r:
        envelope = json.load(r)

payload = envelope.get("data", {})
text = payload.get("text", "")
reply = json.dumps({
    "word_count": len(text.split()),
    "envelope_id": envelope.get("id"),
})
if raw.strip() or not metadata:
    print(reply, flush=True)
else:
    urllib.request.urlopen(urllib.request.Request(
        f"{metadata}/response", data=reply.encode(), method="POST",
        headers={"Content-Type": "application/json"}), timeout=30).close()
