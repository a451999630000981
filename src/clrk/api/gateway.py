"""EgressGateway: the intercepting proxy every outbound connection traverses."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, model_validator

from clrk.api.base import KindInfo, Model, PrinterColumn, Resource
from clrk.api.meta import Condition, DNSLabel, SecretKeyRef
from clrk.api.registry import register


class ListenerTLS(Model):
    mode: Literal["Passthrough", "Terminate"] = Field(
        default="Terminate", description="Terminate: MITM with a leaf signed by the gateway "
        "CA. Passthrough: SNI-routed, not decrypted.")


class Listener(Model):
    name: DNSLabel
    protocol: Literal["TCP", "UDP", "TLS", "HTTP", "HTTPS"]
    port: int | None = Field(default=None, ge=1, le=65535, description="Destination port "
                             "this listener captures; unset = every port of its protocol.")
    tls: ListenerTLS | None = None

    @model_validator(mode="after")
    def _tls_fits_protocol(self) -> Listener:
        if self.tls is not None and self.protocol not in ("TLS", "HTTPS"):
            raise ValueError(f"tls is only valid for TLS and HTTPS listeners, not {self.protocol}")
        if self.protocol == "HTTPS" and self.tls is not None and self.tls.mode != "Terminate":
            raise ValueError("HTTPS listeners always terminate TLS: tls.mode must be Terminate")
        if self.protocol == "TLS" and self.tls is None:
            self.tls = ListenerTLS()
        return self


class CaptureBody(Model):
    max_bytes: int = Field(default=0, ge=0, description="0 = bodies are not captured.")
    content_types: list[str] | None = None


class OTLP(Model):
    endpoint: str | None = Field(default=None, description="Best-effort re-export target.")
    headers: dict[str, str] | None = None
    capture_body: CaptureBody | None = None


class HostAlias(Model):
    hostname: str = Field(min_length=1)
    address: str = Field(min_length=1, description="host or host:port to dial instead.")


class UpstreamTLS(Model):
    host_aliases: list[HostAlias] | None = None
    additional_trust_bundle_secret_ref: SecretKeyRef | None = None


class EgressGatewaySpec(Model):
    default_policy: Literal["deny-all", "allow-all"] = Field(
        default="deny-all", description="What happens to traffic no route matched.")
    listeners: list[Listener] | None = None
    otlp: OTLP | None = None
    upstream_tls: UpstreamTLS | None = Field(default=None, alias="upstreamTLS")

    @model_validator(mode="after")
    def _unique_listeners(self) -> EgressGatewaySpec:
        names = [li.name for li in self.listeners or []]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"listener names must be unique: {', '.join(dupes)}")
        return self


class EgressGatewayStatus(Model):
    observed_generation: int | None = None
    conditions: list[Condition] | None = None
    ca_secret_name: str | None = None


@register
class EgressGateway(Resource):
    """A per-team Envoy that terminates TLS, injects credentials and enforces policy."""

    kind_info: ClassVar[KindInfo] = KindInfo(
        kind="EgressGateway", plural="egressgateways", short_names=("egw",),
        printer_columns=(
            PrinterColumn("Default", ".spec.defaultPolicy"),
            PrinterColumn("CA", '.status.conditions[?(@.type=="CAReady")].status'),
            PrinterColumn("CA-Secret", ".status.caSecretName", priority=1),
            PrinterColumn("Age", ".metadata.creationTimestamp", "date"),
        ),
    )
    spec: EgressGatewaySpec = Field(default_factory=EgressGatewaySpec)
    status: EgressGatewayStatus | None = None
