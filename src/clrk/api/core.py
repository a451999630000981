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
    """The desired state of a Namespace."""

    finalizers: list[str] | None = Field(
        default=None, description="Kept for Kubernetes compatibility; clrk deletes a "
        "namespace's objects at once and does not wait on these.")


class NamespaceStatus(Model):
    """The observed state of a Namespace."""

    phase: Literal["Active", "Terminating"] | None = Field(
        default=None, description="Active, or Terminating while the namespace is deleted.")


@register
class Namespace(Resource):
    """A scope for names."""

    kind_info: ClassVar[KindInfo] = KindInfo(
        kind="Namespace", plural="namespaces", group="", version="v1", short_names=("ns",),
        namespaced=False, categories=(), name_max_length=63,
        printer_columns=(PrinterColumn("Status", ".status.phase"), _AGE),
    )
    spec: NamespaceSpec | None = Field(default=None, description="The desired state of the "
                                       "Namespace.")
    status: NamespaceStatus | None = Field(default=None, description="The observed state of "
                                           "the Namespace, set by the server.")


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
    type: str = Field(default="Opaque", description="Type of the Secret (default Opaque), "
                      "e.g. kubernetes.io/dockerconfigjson for a WorkerPool's "
                      "imagePullSecrets.")
    data: dict[str, str] | None = Field(default=None, description="Keys and their "
                                        "base64-encoded values.")
    string_data: dict[str, str] | None = Field(
        default=None, description="Write-only: plain-text values, stored base64-encoded in "
        "data (over data's own value for the key).")
    immutable: bool | None = Field(default=None, description="Stored for Kubernetes "
                                   "compatibility; clrk does not enforce it.")

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
    """A reference to an object, as in core/v1 ObjectReference."""

    model_config = ConfigDict(extra="allow")

    api_version: str | None = Field(default=None, description="API version of the object.")
    kind: str | None = Field(default=None, description="Kind of the object.")
    name: str | None = Field(default=None, description="Name of the object.")
    namespace: str | None = Field(default=None, description="Namespace of the object.")
    uid: str | None = Field(default=None, description="UID of the object.")
    resource_version: str | None = Field(default=None, description="The object's "
                                         "resourceVersion when the event was recorded.")
    field_path: str | None = Field(default=None, description="The field of the object the "
                                   "event is about, if any.")


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
    involved_object: ObjectReference = Field(default_factory=ObjectReference,
                                             description="The object the event is about.")
    reason: str | None = Field(default=None, description="Short, machine-readable "
                               "CamelCase reason, e.g. RevisionCreated or ImagePullFailed.")
    message: str | None = Field(default=None, description="A human-readable description.")
    type: str | None = Field(default=None, description="Normal or Warning.")
    count: int | None = Field(default=None, description="How many times the event occurred.")
    first_timestamp: str | None = Field(default=None, description="When the event was first "
                                        "recorded (RFC 3339).")
    last_timestamp: str | None = Field(default=None, description="When the event was last "
                                       "recorded (RFC 3339).")
    event_time: Any = Field(default=None, description="When the event was first observed, "
                            "with microseconds (RFC 3339).")
    source: dict[str, Any] | None = Field(default=None, description="The component (and "
                                          "host) that reported the event.")
    reporting_component: str | None = Field(default=None, description="The controller that "
                                            "emitted the event, e.g. clrk-controller-manager.")
    reporting_instance: str | None = Field(default=None, description="The instance of that "
                                           "controller.")
    action: str | None = Field(default=None, description="What was done, or failed, about "
                               "the object.")
