"""Policies that attach to routes or gateways (Gateway API GEP-713 style)."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from clrk.api.attachment import POLICY_COLUMNS, PolicyStatus
from clrk.api.base import KindInfo, Model, PrinterColumn, Resource
from clrk.api.meta import (
    Duration,
    LocalObjectReference,
    ParentReference,
    PolicyTargetReference,
    PositiveDuration,
)
from clrk.api.registry import register

_AGE = PrinterColumn("Age", ".metadata.creationTimestamp", "date")
_PARENT_REFS = ("Objects the policy attaches to (Gateway API style): routes, gateways or "
                "Backends in its namespace. A route's own policy applies before its "
                "gateway's.")
_TARGET_REF = ("The object the policy attaches to (GEP-713): a route, a gateway or a "
               "Backend in its namespace.")
_STATUS = "Whether each object the policy names takes it; written by clrk."


class AWSv4(Model):
    """Where AWS Signature Version 4 signatures are scoped."""

    region: str = Field(min_length=1, description="AWS region, e.g. us-east-1.")
    service: str = Field(min_length=1, description="AWS service name, e.g. bedrock.")


class ProviderAuth(Model):
    """Provider-specific request signing."""

    type: Literal["AWSv4", "GCPServiceAccount"] = Field(
        description="AWSv4: sign with SigV4 (the Secret value is JSON or aws-cli style "
        "lines with the access key id, secret key and optional session token). "
        "GCPServiceAccount: a bearer token from the service-account key JSON in the Secret.")
    awsv4: AWSv4 | None = Field(default=None, description="Region and service to sign for; "
                                "required when type is AWSv4.")

    @model_validator(mode="after")
    def _aws(self) -> ProviderAuth:
        if self.type == "AWSv4" and self.awsv4 is None:
            raise ValueError("awsv4 (region and service) is required when type is AWSv4")
        return self


class CredentialInjectionPolicySpec(Model):
    """The desired state of a CredentialInjectionPolicy."""

    parent_refs: list[ParentReference] | None = Field(default=None, description=_PARENT_REFS)
    target_ref: PolicyTargetReference | None = Field(
        default=None, description="The route or gateway whose requests get the credential; "
        "or a Backend: then the requests sent to that Backend, before any policy of the "
        "route (a route whose Backends are different providers needs one per Backend).")
    secret_ref: LocalObjectReference = Field(
        description="The Secret holding the credential, in the policy's namespace. The "
        "worker reads it; the sandbox never sees it.")
    secret_key: str = Field(min_length=1, description="The key in the Secret's data whose "
                            "value is injected.")
    target: Literal["Header", "QueryParam", "ProviderAuth"] = Field(
        default="Header", description="How the value is injected: Header (default; "
        "replacing whatever the agent sent), QueryParam, or ProviderAuth (request signing).")
    header_name: str | None = Field(default=None, description="The header to set; required "
                                    "when target is Header.")
    value_prefix: str | None = Field(default=None, description='Text put before the value '
                                     'in the header, e.g. "Bearer ".')
    query_param_name: str | None = Field(default=None, description="The query parameter to "
                                         "set; required when target is QueryParam.")
    provider_auth: ProviderAuth | None = Field(default=None, description="How to sign; "
                                               "required when target is ProviderAuth.")

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
            *POLICY_COLUMNS,
            _AGE,
        ),
    )
    spec: CredentialInjectionPolicySpec = Field(description="The desired state of the "
                                                "CredentialInjectionPolicy.")
    status: PolicyStatus | None = Field(default=None, description=_STATUS)


class RateLimitPolicySpec(Model):
    """The desired state of a RateLimitPolicy."""

    parent_refs: list[ParentReference] | None = Field(default=None, description=_PARENT_REFS)
    target_ref: PolicyTargetReference | None = Field(default=None, description=_TARGET_REF)
    requests: int = Field(ge=1, description="Requests allowed per window; past it they get "
                          "429 with Retry-After.")
    window: PositiveDuration = Field(description="The window, a Go duration such as 1s or "
                                     "1m.")
    scope: Literal["PerAgent", "PerExecution", "PerRoute"] = Field(
        default="PerAgent", description="Who shares the budget: PerAgent (default; all "
        "executions of an agent), PerExecution (each execution), or PerRoute (everyone "
        "using the route). Counted across workers except PerExecution.")


@register
class RateLimitPolicy(Resource):
    """Caps request rates at the proxy per agent, per execution or per route."""

    kind_info: ClassVar[KindInfo] = KindInfo(
        kind="RateLimitPolicy", plural="ratelimitpolicies", short_names=("rlp",),
        printer_columns=(
            PrinterColumn("Requests", ".spec.requests", "integer"),
            PrinterColumn("Window", ".spec.window"),
            PrinterColumn("Scope", ".spec.scope"),
            *POLICY_COLUMNS,
            _AGE,
        ),
    )
    spec: RateLimitPolicySpec = Field(description="The desired state of the "
                                      "RateLimitPolicy.")
    status: PolicyStatus | None = Field(default=None, description=_STATUS)


class DenyResponse(Model):
    """The answer a denied request gets."""

    status_code: int = Field(default=403, ge=100, le=599, description="HTTP status of the "
                             "answer (default 403).")
    message: str | None = Field(default=None, description="Body of the answer (default: "
                                "names the policy).")


class EgressDenyPolicySpec(Model):
    """The desired state of an EgressDenyPolicy."""

    target_ref: PolicyTargetReference = Field(description="The route or gateway whose "
                                              "requests are denied, in the policy's "
                                              "namespace.")
    deny_response: DenyResponse = Field(default_factory=DenyResponse, description="The "
                                        "answer denied requests get (default 403).")


@register
class EgressDenyPolicy(Resource):
    """Flips an otherwise-allowed route to deny."""

    kind_info: ClassVar[KindInfo] = KindInfo(
        kind="EgressDenyPolicy", plural="egressdenypolicies", short_names=("edp",),
        printer_columns=(
            PrinterColumn("Target-Kind", ".spec.targetRef.kind"),
            PrinterColumn("Target", ".spec.targetRef.name"),
            PrinterColumn("Status", ".spec.denyResponse.statusCode", "integer"),
            *POLICY_COLUMNS,
            _AGE,
        ),
    )
    spec: EgressDenyPolicySpec = Field(description="The desired state of the "
                                       "EgressDenyPolicy.")
    status: PolicyStatus | None = Field(default=None, description=_STATUS)


class LoggingPolicySpec(Model):
    """The desired state of a LoggingPolicy."""

    parent_refs: list[ParentReference] | None = Field(default=None, description=_PARENT_REFS)
    target_ref: PolicyTargetReference | None = Field(default=None, description=_TARGET_REF)
    capture_request: bool = Field(
        default=False, description="Record request bodies (up to the gateway's "
        "otlp.captureBody.maxBytes, else 64 KiB). Default false.")
    capture_response: bool = Field(
        default=False, description="Record response bodies (up to the gateway's "
        "otlp.captureBody.maxBytes, else 64 KiB). Default false.")
    redact_headers: list[str] | None = Field(
        default=None, description="Headers (any case) whose values are replaced by "
        "[redacted] in records, besides the credential headers always redacted.")

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
            *POLICY_COLUMNS,
            _AGE,
        ),
    )
    spec: LoggingPolicySpec = Field(default_factory=LoggingPolicySpec,
                                    description="The desired state of the LoggingPolicy.")
    status: PolicyStatus | None = Field(default=None, description=_STATUS)


class Retry(Model):
    """When and how often a request is retried on the next Backend."""

    attempts: int = Field(default=2, ge=0, description="Retries after the first try "
                          "(default 2).")
    retry_on: list[int] = Field(
        default_factory=lambda: [429, 503], description="HTTP statuses that are retried "
        "(default 429 and 503); connection failures to a Backend are retried too.")
    per_try_timeout: Duration | None = Field(default=None, description="Time limit of each "
                                             "try, a Go duration; unset: none.")


class Ejection(Model):
    """Taking a failing Backend out of rotation for a while (outlier ejection)."""

    consecutive_errors: int = Field(default=5, ge=1, description="Failures in a row (5xx "
                                    "answers or connect failures) that eject a Backend "
                                    "(default 5).")
    interval: Duration = Field(default="10s", description="How often ejection is evaluated, "
                               "a Go duration (default 10s).")
    base_ejection_time: Duration = Field(default="30s", description="How long a Backend "
                                         "stays ejected, a Go duration (default 30s).")


class FallbackRoutingPolicySpec(Model):
    """The desired state of a FallbackRoutingPolicy."""

    target_ref: PolicyTargetReference = Field(
        description="The AIProviderRoute whose rules' Backends fall back to one another, "
        "in the policy's namespace.")
    retry: Retry = Field(default_factory=Retry, description="Retries on the rule's other "
                         "Backends (default 2, on 429 and 503).")
    ejection: Ejection | None = Field(default=None, description="Outlier ejection of "
                                      "failing Backends; unset: none.")


@register
class FallbackRoutingPolicy(Resource):
    """Retries and outlier ejection across a route's backends."""

    kind_info: ClassVar[KindInfo] = KindInfo(
        kind="FallbackRoutingPolicy", plural="fallbackroutingpolicies", short_names=("frp",),
        printer_columns=(
            PrinterColumn("Target", ".spec.targetRef.name"),
            PrinterColumn("Attempts", ".spec.retry.attempts", "integer"),
            *POLICY_COLUMNS,
            _AGE,
        ),
    )
    spec: FallbackRoutingPolicySpec = Field(description="The desired state of the "
                                            "FallbackRoutingPolicy.")
    status: PolicyStatus | None = Field(default=None, description=_STATUS)
