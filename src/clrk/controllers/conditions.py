"""Status conditions whose lastTransitionTime moves only when status flips."""

from __future__ import annotations

import datetime as dt
from typing import Any


def now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def set_condition(conditions: list[dict[str, Any]], type_: str, status: bool, reason: str,
                  message: str, generation: int | None) -> list[dict[str, Any]]:
    """Return ``conditions`` with ``type_`` set; keeps the transition time if unchanged."""
    value = "True" if status else "False"
    out = [c for c in conditions if c.get("type") != type_]
    old = next((c for c in conditions if c.get("type") == type_), None)
    since = old.get("lastTransitionTime") if old and old.get("status") == value else None
    cond: dict[str, Any] = {"type": type_, "status": value, "reason": reason,
                            "message": message, "lastTransitionTime": since or now()}
    if generation is not None:
        cond["observedGeneration"] = generation
    out.append(cond)
    order = {c.get("type"): i for i, c in enumerate(conditions)}
    out.sort(key=lambda c: order.get(c.get("type"), len(order)))
    return out


def newly_false(before: list[dict[str, Any]], after: list[dict[str, Any]]
                ) -> list[dict[str, Any]]:
    """Conditions False in ``after`` that were not False, or False for another reason,
    in ``before``: what a Warning event should tell once, not at every reconcile."""
    was = {(c.get("type"), c.get("reason")) for c in before if c.get("status") == "False"}
    return [c for c in after
            if c.get("status") == "False" and (c.get("type"), c.get("reason")) not in was]
