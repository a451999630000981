"""What `clrk get` and `clrk delete` are asked for: kinds, and names within them.

The forms kubectl takes: ``KIND [NAME...]``, ``KIND,KIND... [NAME...]`` (the names in
each of the kinds) and ``KIND/NAME...``; and ``KIND KIND...`` (each a plural or short
name, as `clrk get ta da`), which kubectl would read as a kind and names: an object
named like a plural or short name (``da``) is asked for as ``ta/da``."""

from __future__ import annotations

from dataclasses import dataclass, field

from clrk.api.base import Resource
from clrk.api.registry import lookup
from clrk.cli.errors import CLIError


@dataclass
class Selection:
    """One kind and the names asked for in it (none: every object of the kind)."""

    cls: type[Resource]
    names: list[str] = field(default_factory=list)


def resolve(kind: str) -> type[Resource]:
    cls = lookup(kind)
    if cls is None:
        raise CLIError(f'the server doesn\'t have a resource type "{kind}"')
    return cls


def _kind_word(word: str) -> type[Resource] | None:
    """The kind ``word`` names as a plural or short name (never a singular or Kind)."""
    cls = lookup(word)
    if cls is None:
        return None
    bare = word.lower().split(".", 1)[0]
    info = cls.kind_info
    return cls if bare in (info.plural, *info.short_names) else None


def _add(out: list[Selection], cls: type[Resource], names: list[str]) -> None:
    for sel in out:
        if sel.cls is cls:
            sel.names += [n for n in names if n not in sel.names]
            return
    out.append(Selection(cls, list(names)))


def parse(args: list[str]) -> list[Selection]:
    """The selections ``args`` make, kinds in the order given."""
    if not args:
        raise CLIError("give a kind: clrk get KIND [NAME...] (e.g. clrk get taskagents)")
    out: list[Selection] = []
    if any("/" in a for a in args):
        if not all("/" in a for a in args):
            raise CLIError("there is no need to give a kind as a separate argument when "
                           "passing arguments in KIND/NAME form")
        for arg in args:
            kind, _, name = arg.partition("/")
            if not kind or not name:
                raise CLIError(f"arguments in KIND/NAME form may not have an empty part: "
                               f"{arg!r}")
            _add(out, resolve(kind), [name])
        return out
    first, rest = args[0], args[1:]
    kinds = [resolve(k) for k in first.split(",") if k]
    if not kinds:
        raise CLIError(f"no kind in {first!r}")
    more = [_kind_word(a) for a in rest]
    if rest and all(more) and "," not in first:
        kinds += [c for c in more if c is not None]
        rest = []
    for cls in kinds:
        _add(out, cls, rest)
    return out
