"""EgressGateway: the intercepting proxy every outbound connection traverses."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, model_validator

from clrk.api.base import KindInfo, Model, PrinterColumn, Resource
from clrk.api.meta import Condition, DNSLabel, SecretKeyRef
from clrk.api.registry import register


class ListenerTLS(Model):
    """Whether a TLS listener decrypts."""

    mode: Literal["Passthrough", "Terminate"] = Field(
        default="Terminate", description="Terminate (default): MITM with a leaf signed by "
        "the gateway CA. Passthrough: SNI-routed, not decrypted.")


class Listener(Model):
    """What the gateway does with one protocol on a port (or every port)."""

    name: DNSLabel = Field(description="Name of the listener, unique in the gateway; routes "
                           "may name it in parentRefs[].sectionName.")
    protocol: Literal["TCP", "UDP", "TLS", "HTTP", "HTTPS"] = Field(
        description="TCP, UDP, TLS, HTTP or HTTPS. On its ports, an HTTPS or Terminate-mode "
        "TLS listener makes the gateway terminate TLS to EgressL4Route hostnames and an HTTP "
        "listener makes it read their plain HTTP, so HTTP policies apply. Every connection "
        "is intercepted whatever the listeners.")
    port: int | None = Field(default=None, ge=1, le=65535, description="Destination port "
                             "this listener captures; unset = every port of its protocol.")
    tls: ListenerTLS | None = Field(
        default=None, description="TLS mode; only for TLS (default Terminate) and HTTPS "
        "(always Terminate) listeners.")

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
    """How much of HTTP bodies the gateway's records carry."""

    max_bytes: int = Field(
        default=0, ge=0, description="Most bytes of each request and response body "
        "recorded (default 0: bodies are not recorded, unless a LoggingPolicy asks for "
        "them; then up to 64 KiB).")
    content_types: list[str] | None = Field(
        default=None, description="Content-Type prefixes whose bodies are recorded, e.g. "
        "application/json; unset: every type.")


class OTLP(Model):
    """Where the gateway's records are also sent, and what they carry."""

    endpoint: str | None = Field(
        default=None, description="Base URL of an OTLP/HTTP collector the records are "
        "re-exported to (JSON, POST <endpoint>/v1/logs and /v1/traces), best effort. "
        "Records are kept in clrk's own store either way.")
    headers: dict[str, str] | None = Field(default=None, description="HTTP headers sent "
                                           "with every export request, e.g. an API key.")
    capture_body: CaptureBody | None = Field(default=None, description="Whether, and how "
                                             "much of, HTTP bodies are recorded.")


class HostAlias(Model):
    """A hostname the gateway dials at another address."""

    hostname: str = Field(min_length=1, description="The hostname the agent connects to.")
    address: str = Field(min_length=1, description="host or host:port to dial instead; SNI "
                         "and the certificate check still use hostname.")


class UpstreamTLS(Model):
    """How the gateway connects to upstreams."""

    host_aliases: list[HostAlias] | None = Field(
        default=None, description="Hostnames dialed at another address, e.g. a local test "
        "server standing in for api.anthropic.com.")
    additional_trust_bundle_secret_ref: SecretKeyRef | None = Field(
        default=None, description="A Secret key holding PEM CA certificates trusted for "
        "upstream TLS besides the system roots.")


class EgressGatewaySpec(Model):
    """The desired state of an EgressGateway."""

    default_policy: Literal["deny-all", "allow-all"] = Field(
        default="deny-all", description="What happens to traffic no route matched: "
        "deny-all (default) refuses it; allow-all lets it through (for development only).")
    listeners: list[Listener] | None = Field(default=None, description="How the gateway "
                                             "treats each protocol and port.")
    otlp: OTLP | None = Field(default=None, description="Re-export of the gateway's records "
                              "to an OTLP collector, and body capture.")
    upstream_tls: UpstreamTLS | None = Field(
        default=None, alias="upstreamTLS", description="Host aliases and extra trusted CAs "
        "for the gateway's connections to upstreams.")

    @model_validator(mode="after")
    def _unique_listeners(self) -> EgressGatewaySpec:
        names = [li.name for li in self.listeners or []]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"listener names must be unique: {', '.join(dupes)}")
        return self


class EgressGatewayStatus(Model):
    """What the controller observed of an EgressGateway."""

    observed_generation: int | None = Field(
        default=None, description="The metadata.generation the controller last reconciled.")
    conditions: list[Condition] | None = Field(
        default=None, description="Accepted; CAReady: whether the gateway's CA Secret exists "
        "and holds a usable CA.")
    ca_secret_name: str | None = Field(
        default=None, description="The Secret (clrk-egressgateway-ca-<name>) with the CA "
        "that signs the gateway's leaf certificates; sandboxes trust it. Created once, "
        "never rotated.")


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
    spec: EgressGatewaySpec = Field(default_factory=EgressGatewaySpec,
                                    description="The desired state of the EgressGateway.")
    status: EgressGatewayStatus | None = Field(default=None, description="The gateway's CA "
                                               "and conditions, written by clrk.")
