"""Base classes every resource model derives from.

Field names are snake_case in Python and camelCase on the wire (aliases), unknown
fields are rejected (the API server relaxes that for ``fieldValidation`` Ignore/Warn),
and each kind carries a :class:`KindInfo` describing how it is served.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

GROUP = "clrk.apoxy.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

# The descriptions Kubernetes gives the fields every object has (kubectl explain shows them).
API_VERSION_DESCRIPTION = (
    "APIVersion defines the versioned schema of this representation of an object: "
    "clrk.apoxy.dev/v1alpha1 for clrk's kinds, v1 for the core ones. Servers should convert "
    "recognized schemas to the latest internal value, and may reject unrecognized values.")
KIND_DESCRIPTION = (
    "Kind is a string value representing the REST resource this object represents, in "
    "CamelCase (e.g. TaskAgent). Servers may infer this from the endpoint the client "
    "submits requests to. Cannot be updated.")
METADATA_DESCRIPTION = (
    "Standard object metadata: name, namespace, labels, annotations, and what the server "
    "sets (uid, resourceVersion, generation, creationTimestamp, ...).")


class Model(BaseModel):
    """A wire object: camelCase aliases, unknown fields forbidden."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        validate_default=True,
    )

    def to_wire(self) -> dict[str, Any]:
        """The JSON form the API stores and serves (aliases, no nulls)."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


@dataclass(frozen=True)
class PrinterColumn:
    """A ``kubectl get`` column (CRD additionalPrinterColumns and Table output)."""

    name: str
    json_path: str
    type: Literal["string", "integer", "number", "boolean", "date"] = "string"
    description: str = ""
    priority: int = 0  # 0 = shown by default, 1 = only with -o wide
    format: str = ""


@dataclass(frozen=True)
class KindInfo:
    """How a kind is named and served."""

    kind: str
    plural: str
    group: str = GROUP
    version: str = VERSION
    short_names: tuple[str, ...] = ()
    namespaced: bool = True
    has_status: bool = True
    # Invocations are written by the system only; users get 405 on create.
    user_creatable: bool = True
    # Maximum metadata.name length: 253 for DNS subdomains, 63 for DNS labels.
    name_max_length: int = 253
    printer_columns: tuple[PrinterColumn, ...] = ()
    categories: tuple[str, ...] = ("clrk",)
    description: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def singular(self) -> str:
        return self.kind.lower()

    @property
    def list_kind(self) -> str:
        return f"{self.kind}List"


class Resource(Model):
    """A top-level object. Subclasses set ``kind_info`` and declare ``spec``/``status``.

    ``metadata`` is validated separately by the API server (it owns most of it),
    so here it is an open mapping.
    """

    kind_info: ClassVar[KindInfo]

    api_version: str | None = Field(default=None, description=API_VERSION_DESCRIPTION)
    kind: str | None = Field(default=None, description=KIND_DESCRIPTION)
    metadata: dict[str, Any] = Field(default={}, description=METADATA_DESCRIPTION)
