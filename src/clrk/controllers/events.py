"""Core v1 Events about our objects, so `kubectl describe` tells what happened."""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from typing import Any

from lightkube import AsyncClient
from lightkube.models.core_v1 import EventSource, ObjectReference
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import Event

log = logging.getLogger("clrk.controllers")
COMPONENT = "clrk-controller-manager"


async def emit(client: AsyncClient, obj: dict[str, Any], reason: str, message: str,
               type_: str = "Normal") -> None:
    """Best effort: an Event that cannot be written must not fail a reconcile."""
    md = obj.get("metadata", {})
    ns = md.get("namespace") or "default"
    ts = dt.datetime.now(dt.UTC).replace(microsecond=0)
    event = Event(
        metadata=ObjectMeta(name=f"{md.get('name', 'object')}.{uuid.uuid4().hex[:10]}",
                            namespace=ns),
        involvedObject=ObjectReference(apiVersion=obj.get("apiVersion"), kind=obj.get("kind"),
                                       name=md.get("name"), namespace=ns, uid=md.get("uid"),
                                       resourceVersion=md.get("resourceVersion")),
        reason=reason, message=message, type=type_, count=1,
        source=EventSource(component=COMPONENT), reportingComponent=COMPONENT,
        firstTimestamp=ts, lastTimestamp=ts,
    )
    try:
        await client.create(event)
    except Exception as err:  # pragma: no cover - best effort
        log.debug("could not record event %s: %s", reason, err)
