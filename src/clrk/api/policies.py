"""Policies that attach to routes or gateways (Gateway API GEP-713 style)."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from clrk.api.base import KindInfo, Model, PrinterColumn, Resource
from clrk.api.meta import (
    Condition,
    Duration,
    LocalObjectReference,
    ParentReference,
    PolicyTargetReference,
    PositiveDuration,
)
from clrk.api.registry import register

_AGE = PrinterColumn("Age", ".metadata.creationTimestamp", "date")


class PolicyStatus(Model):
    observed_generation: int | None = None
    conditions: list[Condition] | None = None


class AWSv4(Model):
    region: str = Field(min_length=1)
    service: str = Field(min_length=1)


class ProviderAuth(Model):
    type: Literal["AWSv4", "GCPServiceAccount"]
    awsv4: AWSv4 | None = None

    @model_validator(mode="after")
    def _aws(self) -> ProviderAuth:
        if self.type == "AWSv4" and self.awsv4 is None:
            raise ValueError("awsv4 (region and service) is required when type is AWSv4")
        return self


class CredentialInjectionPolicySpec(Model):
    parent_refs: list[ParentReference] | None = None
    target_ref: PolicyTargetReference | None = Field(
        default=None, description="The route or gateway whose requests get the credential; "
        "or a Backend: then the requests sent to that Backend, before any policy of the "
        "route (a route whose Backends are different providers needs one per Backend).")
    secret_ref: LocalObjectReference
    secret_key: str = Field(min_length=1)
    target: Literal["Header", "QueryParam", "ProviderAuth"] = "Header"
    header_name: str | None = None
    value_prefix: str | None = Field(default=None, description='e.g. "Bearer ".')
    query_param_name: str | None = None
    provider_auth: ProviderAuth | None = None

    @model_validator(mode="after")
    def _target_fields(self) -> CredentialInjectionPolicySpec:
        if self.target == "Header" and not self.header_name:
            raise ValueError("headerName is required when target is Header")
        if self.target == "QueryParam" and not self.query_param_name:
            raise ValueError("queryParamName is required when target is QueryParam")
        if self.target == "ProviderAuth" and self.provider_auth is None:
            raise ValueError("providerAuth is required when target is ProviderAuth")
        if not self.parent_refs and self.target_ref is None:
            raise ValueError("parentRefs or targetRef must name the route or gateway")
        return self


@register
class CredentialInjectionPolicy(Resource):
    """Injects a Secret as a header, query parameter or provider signature at the proxy."""

    kind_info: ClassVar[KindInfo] = KindInfo(
        kind="CredentialInjectionPolicy", plural="credentialinjectionpolicies",
        short_names=("cip",),
        printer_columns=(
            PrinterColumn("Target", ".spec.target"),
            PrinterColumn("Secret", ".spec.secretRef.name"),
            PrinterColumn("Route", ".spec.parentRefs[0].name"),
            _AGE,
        ),
    )
    spec: CredentialInjectionPolicySpec
    status: PolicyStatus | None = None


class RateLimitPolicySpec(Model):
    parent_refs: list[ParentReference] | None = None
    target_ref: PolicyTargetReference | None = None
    requests: int = Field(ge=1)
    window: PositiveDuration
    scope: Literal["PerAgent", "PerExecution", "PerRoute"] = "PerAgent"


@register
class RateLimitPolicy(Resource):
    """Caps request rates at the proxy per agent, per execution or per route."""

    kind_info: ClassVar[KindInfo] = KindInfo(
        kind="RateLimitPolicy", plural="ratelimitpolicies", short_names=("rlp",),
        printer_columns=(
            PrinterColumn("Requests", ".spec.requests", "integer"),
            PrinterColumn("Window", ".spec.window"),
            PrinterColumn("Scope", ".spec.scope"),
            _AGE,
        ),
    )
    spec: RateLimitPolicySpec
    status: PolicyStatus | None = None


class DenyResponse(Model):
    status_code: int = Field(default=403, ge=100, le=599)
    message: str | None = None


class EgressDenyPolicySpec(Model):
    target_ref: PolicyTargetReference
    deny_response: DenyResponse = Field(default_factory=DenyResponse)


@register
class EgressDenyPolicy(Resource):
    """Flips an otherwise-allowed route to deny."""

    kind_info: ClassVar[KindInfo] = KindInfo(
        kind="EgressDenyPolicy", plural="egressdenypolicies", short_names=("edp",),
        printer_columns=(
            PrinterColumn("Target-Kind", ".spec.targetRef.kind"),
            PrinterColumn("Target", ".spec.targetRef.name"),
            PrinterColumn("Status", ".spec.denyResponse.statusCode", "integer"),
            _AGE,
        ),
    )
    spec: EgressDenyPolicySpec
    status: PolicyStatus | None = None


class LoggingPolicySpec(Model):
    parent_refs: list[ParentReference] | None = None
    target_ref: PolicyTargetReference | None = None
    capture_request: bool = False
    capture_response: bool = False
    redact_headers: list[str] | None = None

    @field_validator("redact_headers")
    @classmethod
    def _lower(cls, v: list[str] | None) -> list[str] | None:
        return [h.lower() for h in v] if v is not None else None


@register
class LoggingPolicy(Resource):
    """What the OTLP capture records for a route: bodies, and which headers to redact."""

    kind_info: ClassVar[KindInfo] = KindInfo(
        kind="LoggingPolicy", plural="loggingpolicies", short_names=("lp",),
        printer_columns=(
            PrinterColumn("Request", ".spec.captureRequest", "boolean"),
            PrinterColumn("Response", ".spec.captureResponse", "boolean"),
            _AGE,
        ),
    )
    spec: LoggingPolicySpec = Field(default_factory=LoggingPolicySpec)
    status: PolicyStatus | None = None


class Retry(Model):
    attempts: int = Field(default=2, ge=0)
    retry_on: list[int] = Field(default_factory=lambda: [429, 503])
    per_try_timeout: Duration | None = None


class Ejection(Model):
    consecutive_errors: int = Field(default=5, ge=1)
    interval: Duration = "10s"
    base_ejection_time: Duration = "30s"


class FallbackRoutingPolicySpec(Model):
    target_ref: PolicyTargetReference
    retry: Retry = Field(default_factory=Retry)
    ejection: Ejection | None = None


@register
class FallbackRoutingPolicy(Resource):
    """Retries and outlier ejection across a route's backends."""

    kind_info: ClassVar[KindInfo] = KindInfo(
        kind="FallbackRoutingPolicy", plural="fallbackroutingpolicies", short_names=("frp",),
        printer_columns=(
            PrinterColumn("Target", ".spec.targetRef.name"),
            PrinterColumn("Attempts", ".spec.retry.attempts", "integer"),
            _AGE,
        ),
    )
    spec: FallbackRoutingPolicySpec
    status: PolicyStatus | None = None
