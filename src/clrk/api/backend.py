"""Backend: an upstream an AIProviderRoute can send traffic to."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from clrk.api.base import KindInfo, Model, PrinterColumn, Resource
from clrk.api.meta import Condition
from clrk.api.registry import register
from clrk.api.routes import Provider


class ModelRewrite(Model):
    """A model renamed in the requests sent to a Backend."""

    from_: str = Field(alias="from", min_length=1, description="Model-name glob the "
                       "request's model must match, e.g. gpt-4o*.")
    to: str = Field(min_length=1, description="The model name the request gets instead.")


class BackendSpec(Model):
    """The desired state of a Backend."""

    host: str = Field(min_length=1, description="Hostname of the upstream.")
    port: int = Field(default=443, ge=1, le=65535, description="Port of the upstream "
                      "(default 443).")
    schema_: Provider | None = Field(
        default=None, alias="schema", description="Wire format the upstream speaks (a "
        "provider name, as in AIProviderRoute). Requests in another format are translated "
        "(anthropic and openai, either way); unset: the route's format.")
    tls: bool = Field(default=True, description="Connect with TLS (default true), checked "
                      "against the system roots and the gateway's trust bundle.")
    model_rewrites: list[ModelRewrite] | None = Field(
        default=None, description="Model renames for requests sent here; the first whose "
        "from glob matches applies.")


class BackendStatus(Model):
    """The observed state of a Backend."""

    conditions: list[Condition] | None = Field(
        default=None, description="Not written yet: the status of the routes that name a "
        "Backend says whether it exists (ResolvedRefs).")


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
    spec: BackendSpec = Field(description="The desired state of the Backend.")
    status: BackendStatus | None = Field(default=None, description="The observed state of "
                                         "the Backend.")
