"""Label and field selectors, parsed once per request."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

_SET = re.compile(r"^\s*(!?)([A-Za-z0-9./_-]+)\s*(?:(in|notin)\s*\(([^)]*)\))?\s*$")
_EQ = re.compile(r"^\s*([A-Za-z0-9./_-]+)\s*(==|=|!=)\s*([A-Za-z0-9._-]*)\s*$")


class SelectorError(ValueError):
    pass


@dataclass(frozen=True)
class Requirement:
    key: str
    op: str  # "=", "!=", "in", "notin", "exists", "!"
    values: tuple[str, ...] = ()

    def matches(self, value: str | None) -> bool:
        if self.op == "exists":
            return value is not None
        if self.op == "!":
            return value is None
        if self.op == "=":
            return value == self.values[0]
        if self.op == "!=":
            return value != self.values[0]
        if self.op == "in":
            return value in self.values
        return value not in self.values  # notin


def _split(text: str) -> list[str]:
    parts, depth, cur = [], 0, ""
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    if cur.strip():
        parts.append(cur)
    return parts


def parse_label_selector(text: str | None) -> list[Requirement]:
    reqs: list[Requirement] = []
    for part in _split(text or ""):
        if m := _EQ.match(part):
            key, op, value = m.groups()
            reqs.append(Requirement(key, "!=" if op == "!=" else "=", (value,)))
        elif m := _SET.match(part):
            neg, key, op, values = m.groups()
            if op:
                if neg:
                    raise SelectorError(f"invalid label selector {part.strip()!r}")
                vals = tuple(v.strip() for v in values.split(",") if v.strip())
                reqs.append(Requirement(key, op, vals))
            else:
                reqs.append(Requirement(key, "!" if neg else "exists"))
        else:
            raise SelectorError(f"invalid label selector {part.strip()!r}")
    return reqs


def parse_field_selector(text: str | None) -> list[Requirement]:
    reqs: list[Requirement] = []
    for part in _split(text or ""):
        m = re.match(r"^\s*([A-Za-z0-9._-]+)\s*(==|=|!=)\s*(.*?)\s*$", part)
        if not m:
            raise SelectorError(f"invalid field selector {part.strip()!r}")
        key, op, value = m.groups()
        reqs.append(Requirement(key, "!=" if op == "!=" else "=", (value,)))
    return reqs


def _field(obj: Any, path: str) -> str | None:
    cur = obj
    for part in path.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return None if path != "metadata.namespace" else ""
        cur = cur[part]
    if cur is None:
        return None
    if isinstance(cur, bool):
        return "true" if cur else "false"
    return str(cur)


@dataclass(frozen=True)
class Selector:
    labels: tuple[Requirement, ...] = ()
    fields: tuple[Requirement, ...] = ()

    @classmethod
    def parse(cls, label: str | None, field: str | None) -> Selector:
        return cls(tuple(parse_label_selector(label)), tuple(parse_field_selector(field)))

    def matches(self, obj: dict[str, Any]) -> bool:
        labels = (obj.get("metadata") or {}).get("labels") or {}
        if not all(r.matches(labels.get(r.key)) for r in self.labels):
            return False
        return all(r.matches(_field(obj, r.key) or "") if r.op in ("=", "!=")
                   else r.matches(_field(obj, r.key)) for r in self.fields)
