"""Core v1 kinds the API serves: Namespace, Secret, Event."""

from __future__ import annotations

import base64
import binascii
from typing import Any, ClassVar, Literal

from pydantic import ConfigDict, Field, field_validator

from clrk.api.base import KindInfo, Model, PrinterColumn, Resource
from clrk.api.registry import register

_AGE = PrinterColumn("Age", ".metadata.creationTimestamp", "date")


class NamespaceSpec(Model):
    finalizers: list[str] | None = None


class NamespaceStatus(Model):
    phase: Literal["Active", "Terminating"] | None = None


@register
class Namespace(Resource):
    """A scope for names."""

    kind_info: ClassVar[KindInfo] = KindInfo(
        kind="Namespace", plural="namespaces", group="", version="v1", short_names=("ns",),
        namespaced=False, categories=(), name_max_length=63,
        printer_columns=(PrinterColumn("Status", ".status.phase"), _AGE),
    )
    spec: NamespaceSpec | None = None
    status: NamespaceStatus | None = None


@register
class Secret(Resource):
    """Credentials for the egress gateway to inject; never mounted into sandboxes."""

    kind_info: ClassVar[KindInfo] = KindInfo(
        kind="Secret", plural="secrets", group="", version="v1", has_status=False,
        categories=(),
        printer_columns=(
            PrinterColumn("Type", ".type"),
            PrinterColumn("Data", ".data", priority=1),
            _AGE,
        ),
    )
    type: str = "Opaque"
    data: dict[str, str] | None = None
    string_data: dict[str, str] | None = None
    immutable: bool | None = None

    @field_validator("data")
    @classmethod
    def _base64(cls, v: dict[str, str] | None) -> dict[str, str] | None:
        for key, value in (v or {}).items():
            try:
                base64.b64decode(value, validate=True)
            except (binascii.Error, ValueError):
                raise ValueError(f"data[{key!r}] is not valid base64") from None
        return v


class ObjectReference(Model):
    model_config = ConfigDict(extra="allow")

    api_version: str | None = None
    kind: str | None = None
    name: str | None = None
    namespace: str | None = None
    uid: str | None = None
    resource_version: str | None = None
    field_path: str | None = None


@register
class Event(Resource):
    """Something that happened to an object (kubectl describe shows these)."""

    model_config = ConfigDict(extra="allow")
    kind_info: ClassVar[KindInfo] = KindInfo(
        kind="Event", plural="events", group="", version="v1", short_names=("ev",),
        has_status=False, categories=(),
        printer_columns=(
            PrinterColumn("Type", ".type"),
            PrinterColumn("Reason", ".reason"),
            PrinterColumn("Object", ".involvedObject.name"),
            PrinterColumn("Message", ".message"),
            PrinterColumn("Last-Seen", ".lastTimestamp", "date"),
        ),
    )
    involved_object: ObjectReference = Field(default_factory=ObjectReference)
    reason: str | None = None
    message: str | None = None
    type: str | None = None
    count: int | None = None
    first_timestamp: str | None = None
    last_timestamp: str | None = None
    event_time: Any = None
    source: dict[str, Any] | None = None
    reporting_component: str | None = None
    reporting_instance: str | None = None
    action: str | None = None
