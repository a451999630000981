"""Backend: an upstream an AIProviderRoute can send traffic to."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from clrk.api.base import KindInfo, Model, PrinterColumn, Resource
from clrk.api.meta import Condition
from clrk.api.registry import register
from clrk.api.routes import Provider


class ModelRewrite(Model):
    from_: str = Field(alias="from", min_length=1)
    to: str = Field(min_length=1)


class BackendSpec(Model):
    host: str = Field(min_length=1)
    port: int = Field(default=443, ge=1, le=65535)
    schema_: Provider | None = Field(default=None, alias="schema",
                                     description="Wire format the upstream speaks.")
    tls: bool = True
    model_rewrites: list[ModelRewrite] | None = None


class BackendStatus(Model):
    conditions: list[Condition] | None = None


@register
class Backend(Resource):
    """An upstream host and port, its wire schema, and model-name rewrites."""

    kind_info: ClassVar[KindInfo] = KindInfo(
        kind="Backend", plural="backends", short_names=("be",),
        printer_columns=(
            PrinterColumn("Host", ".spec.host"),
            PrinterColumn("Port", ".spec.port", "integer"),
            PrinterColumn("Schema", ".spec.schema"),
            PrinterColumn("Age", ".metadata.creationTimestamp", "date"),
        ),
    )
    spec: BackendSpec
    status: BackendStatus | None = None
