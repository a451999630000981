#!/usr/bin/env python3
"""cron-bot: a TaskAgent fired every minute by its schedule. Each fire is one execution
in a new sandbox; it reads the envelope (subject "cron", .data = spec.scheduleInput) and
prints a one-line report, which is the execution's output in the invocation's logs."""
import datetime
import json
import sys

envelope = json.load(sys.stdin)
data = envelope.get("data") or {}
print(json.dumps({"report": data.get("report", "heartbeat"),
                  "trigger": envelope.get("subject", "http"),
                  "execution": envelope.get("id"),
                  "at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")}))
