"""Printer-column evaluation shared by the API server's Table output and the CLI."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

_FILTER = re.compile(r'^\[\?\(@\.([A-Za-z0-9_]+)==["\']([^"\']*)["\']\)\]')
_INDEX = re.compile(r"^\[(\d+)\]")
_NAME = re.compile(r"^\.([A-Za-z0-9_-]+)")


def jsonpath(obj: Any, path: str) -> Any:
    """Evaluate the JSONPath subset used by printer columns; None when absent."""
    cur: Any = obj
    rest = path
    while rest:
        if m := _NAME.match(rest):
            cur = cur.get(m.group(1)) if isinstance(cur, dict) else None
        elif m := _INDEX.match(rest):
            i = int(m.group(1))
            cur = cur[i] if isinstance(cur, list) and i < len(cur) else None
        elif m := _FILTER.match(rest):
            field, value = m.groups()
            cur = next((x for x in cur if isinstance(x, dict) and str(x.get(field)) == value),
                       None) if isinstance(cur, list) else None
        else:
            return None
        rest = rest[m.end():]
        if cur is None:
            return None
    return cur


def human_age(timestamp: str, now: dt.datetime | None = None) -> str:
    """Render an RFC 3339 time as kubectl does ("45s", "12m", "3h", "5d")."""
    try:
        then = dt.datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    except ValueError:
        return timestamp
    seconds = int(((now or dt.datetime.now(dt.UTC)) - then).total_seconds())
    if seconds < 0:
        return "0s"
    if seconds < 120:
        return f"{seconds}s"
    minutes = seconds // 60
    if minutes < 10:
        return f"{minutes}m{seconds % 60}s" if seconds % 60 else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    hours = minutes // 60
    if hours < 8:
        return f"{hours}h{minutes % 60}m" if minutes % 60 else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    days = hours // 24
    if days < 365 * 2:
        return f"{days}d"
    return f"{days // 365}y"
