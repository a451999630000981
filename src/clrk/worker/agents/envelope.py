"""The CloudEvents 1.0 structured envelope a TaskAgent reads on stdin.

Written by hand rather than with the cloudevents SDK: the contract pins details the
SDK decides differently (id fallbacks, `subject` omitted when there is no trigger,
JSON bodies inline and everything else base64), and it is a dozen lines.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import uuid
from collections.abc import Mapping
from typing import Any

EVENT_TYPE = "dev.apoxy.clrk.taskagent.invoke"
MAX_BODY = 32 * 1024 * 1024


def execution_id(headers: Mapping[str, str]) -> str:
    """X-Clrk-Execution-ID, else x-request-id, else a fresh UUID."""
    lower = {k.lower(): v for k, v in headers.items()}
    return lower.get("x-clrk-execution-id") or lower.get("x-request-id") or str(uuid.uuid4())


def _is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or media.endswith("+json")


def build(namespace: str, name: str, event_id: str, body: bytes, content_type: str,
          trigger: str | None, now: dt.datetime | None = None) -> dict[str, Any]:
    event: dict[str, Any] = {
        "specversion": "1.0",
        "id": event_id,
        "source": f"clrk://{namespace}/{name}",
        "type": EVENT_TYPE,
    }
    if trigger:
        event["subject"] = trigger
    stamp = (now or dt.datetime.now(dt.UTC)).isoformat(timespec="seconds")
    event["time"] = stamp.replace("+00:00", "Z")
    if content_type:
        event["datacontenttype"] = content_type
    if body:
        if _is_json(content_type):
            try:
                event["data"] = json.loads(body)
                return event
            except ValueError:
                pass
        event["data_base64"] = base64.b64encode(body).decode()
    return event


def for_cron(namespace: str, name: str, schedule_input: Any) -> dict[str, Any]:
    """A cron fire: `.data` is scheduleInput verbatim ({} when unset)."""
    event = build(namespace, name, str(uuid.uuid4()), b"", "application/json", "cron")
    event["data"] = {} if schedule_input is None else schedule_input
    return event


def encode(event: dict[str, Any]) -> bytes:
    return json.dumps(event, separators=(",", ":")).encode() + b"\n"
