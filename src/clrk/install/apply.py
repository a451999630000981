"""Server-side apply of the rendered objects, and the plan of what applying would change.

Server-side apply (field manager ``clrk``, conflicts forced: the installer owns these fields)
is what makes a second `clrk install` a no-op: applying an object identical to what the
manager last applied writes nothing, and the resourceVersion stays. The plan asks the server
itself (a dry-run apply) what the object would become, so defaults and other managers' fields
are accounted for the way the real apply will account for them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import httpx
from lightkube import ApiError, Client

from clrk.client import FIELD_MANAGER, to_dict
from clrk.install.diff import comparable, unified

Action = Literal["create", "update", "unchanged"]
# A dry run cannot answer for an object whose namespace or API does not exist yet (404), or
# whose API is registered but not served yet (503): it is then shown as rendered.
_NOT_THERE_YET = (404, 503)


def not_there_yet(err: Exception) -> bool:
    """Whether ``err`` says the object or its API is not there (yet). kube-apiserver answers
    a group nobody serves with a plain-text 404, which lightkube raises as httpx's error,
    not as an ApiError."""
    if isinstance(err, ApiError):
        return err.status.code in _NOT_THERE_YET
    return isinstance(err, httpx.HTTPStatusError) and \
        err.response.status_code in _NOT_THERE_YET


@dataclass(frozen=True)
class Change:
    """What applying one object would do."""

    kind: str
    namespace: str | None
    name: str
    action: Action
    diff: str

    @property
    def label(self) -> str:
        return label_of(self.kind, self.namespace, self.name)


def label_of(kind: str, namespace: str | None, name: str) -> str:
    """``kind/namespace/name`` (``kind/name`` for cluster-scoped objects), lower-case kind."""
    where = f"{namespace}/" if namespace else ""
    return f"{kind.lower()}/{where}{name}"


def identify(obj: Any) -> tuple[str, str | None, str]:
    """(kind, namespace, name) of a lightkube object."""
    d = to_dict(obj)
    meta = d.get("metadata") or {}
    return str(d.get("kind", type(obj).__name__)), meta.get("namespace"), str(meta.get("name"))


def get_live(client: Client, obj: Any) -> dict[str, Any] | None:
    """The object as it is in the cluster, or None when it (or its API) is not there."""
    _, namespace, name = identify(obj)
    try:
        return to_dict(client.get(type(obj), name, namespace=namespace))
    except (ApiError, httpx.HTTPStatusError) as err:
        if not_there_yet(err):
            return None
        raise


def plan_one(client: Client, obj: Any) -> Change:
    """What applying ``obj`` would do, from a dry-run apply against what is there now."""
    kind, namespace, name = identify(obj)
    live = get_live(client, obj)
    try:
        result = to_dict(client.apply(obj, field_manager=FIELD_MANAGER, force=True,
                                      dry_run=True))
    except (ApiError, httpx.HTTPStatusError) as err:
        if live is not None or not not_there_yet(err):
            raise
        result = to_dict(obj)
    if live is None:
        action: Action = "create"
    elif comparable(live) == comparable(result):
        action = "unchanged"
    else:
        action = "update"
    diff = "" if action == "unchanged" else unified(live, result, label_of(kind, namespace, name))
    return Change(kind=kind, namespace=namespace, name=name, action=action, diff=diff)


def plan(client: Client, objects: list[Any]) -> list[Change]:
    """What applying ``objects`` would do, one :class:`Change` each, in order."""
    return [plan_one(client, obj) for obj in objects]


def apply(client: Client, objects: list[Any]) -> list[dict[str, Any]]:
    """Server-side apply each object in order (field manager ``clrk``, forced)."""
    return [to_dict(client.apply(obj, field_manager=FIELD_MANAGER, force=True))
            for obj in objects]


def counts(changes: list[Change]) -> dict[Action, int]:
    """How many objects each action applies to."""
    out: dict[Action, int] = {"create": 0, "update": 0, "unchanged": 0}
    for c in changes:
        out[c.action] += 1
    return out
