"""The registry of served kinds, filled by the ``@register`` decorator in each kind module."""

from __future__ import annotations

from typing import TypeVar

from clrk.api.base import KindInfo, Resource

R = TypeVar("R", bound=type[Resource])

_BY_KIND: dict[tuple[str, str], type[Resource]] = {}


def register(cls: R) -> R:
    info = cls.kind_info
    key = (info.group, info.kind)
    if key in _BY_KIND:
        raise ValueError(f"kind {info.kind} registered twice")
    _BY_KIND[key] = cls
    return cls


def all_kinds() -> list[type[Resource]]:
    return list(_BY_KIND.values())


def by_kind(group: str, kind: str) -> type[Resource] | None:
    return _BY_KIND.get((group, kind))


def by_plural(group: str, version: str, plural: str) -> type[Resource] | None:
    for cls in _BY_KIND.values():
        info = cls.kind_info
        if info.group == group and info.version == version and info.plural == plural:
            return cls
    return None


def lookup(name: str) -> type[Resource] | None:
    """Resolve what a user typed (kind, plural, singular or short name; any case)."""
    wanted = name.lower()
    group = ""
    if "." in wanted:  # "taskagents.clrk.apoxy.dev"
        wanted, group = wanted.split(".", 1)
    for cls in _BY_KIND.values():
        info: KindInfo = cls.kind_info
        if group and info.group != group:
            continue
        names = {info.kind.lower(), info.plural, info.singular, *info.short_names}
        if wanted in names:
            return cls
    return None
