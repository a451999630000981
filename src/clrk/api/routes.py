"""Routes that attach to an EgressGateway listener: AI providers, MCP servers, raw L4."""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, ClassVar, Literal

from pydantic import AfterValidator, Field, WithJsonSchema, model_validator

from clrk.api.base import KindInfo, Model, PrinterColumn, Resource
from clrk.api.meta import Condition, ParentReference, PositiveDuration
from clrk.api.registry import register

PROVIDERS = ("openai", "anthropic", "google", "azure-openai", "bedrock", "custom")


def _check_provider(v: str) -> str:
    if v not in PROVIDERS:
        raise ValueError(f"unknown provider {v!r}: accepted values are {', '.join(PROVIDERS)}")
    return v


Provider = Annotated[str, AfterValidator(_check_provider), WithJsonSchema({"type": "string"})]


def _check_tool_pattern(v: str) -> str:
    if len(v) >= 2 and v.startswith("/") and v.endswith("/"):
        try:
            re.compile(v[1:-1])
        except re.error as err:
            raise ValueError(f"invalid regular expression {v!r}: {err}") from None
    return v


ToolPattern = Annotated[str, AfterValidator(_check_tool_pattern),
                        WithJsonSchema({"type": "string"})]


def _check_cidr(v: str) -> str:
    try:
        ipaddress.ip_network(v, strict=False)
    except ValueError:
        raise ValueError(f"invalid CIDR {v!r}: expected e.g. 10.0.0.0/8 or 2001:db8::/32") \
            from None
    return v


CIDR = Annotated[str, AfterValidator(_check_cidr), WithJsonSchema({"type": "string"})]
_HOST = re.compile(r"^(\*\.)?([a-z0-9]([-a-z0-9]*[a-z0-9])?\.)*[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def _check_hostname(v: str) -> str:
    if not _HOST.match(v.lower()):
        raise ValueError(f"invalid hostname {v!r}: expected an exact name or '*.suffix'")
    return v.lower()


Hostname = Annotated[str, AfterValidator(_check_hostname), WithJsonSchema({"type": "string"})]


_GATEWAY = PrinterColumn("Gateway", ".spec.parentRefs[0].name")
_AGE = PrinterColumn("Age", ".metadata.creationTimestamp", "date")
_ROUTE_COLUMNS = (_GATEWAY, _AGE)


class RouteStatus(Model):
    observed_generation: int | None = None
    conditions: list[Condition] | None = None


class TokenBudget(Model):
    max_tokens_per_execution: int | None = Field(default=None, ge=1)
    max_tokens_per_day: int | None = Field(default=None, ge=1, description="Per route, per "
                                           "gateway, per UTC day.")
    max_output_tokens_per_request: int | None = Field(default=None, ge=1)


class AIFilter(Model):
    type: Literal["TokenBudget"]
    token_budget: TokenBudget | None = None

    @model_validator(mode="after")
    def _body(self) -> AIFilter:
        if self.type == "TokenBudget" and self.token_budget is None:
            raise ValueError("tokenBudget is required when type is TokenBudget")
        return self


class AIMatch(Model):
    provider: Provider
    models: list[str] | None = Field(default=None, description="Globs, e.g. claude-*.")
    endpoints: list[str] | None = Field(default=None, description="Path globs.")


class BackendRef(Model):
    name: str = Field(min_length=1)
    weight: int = Field(default=1, ge=0)


class AIRule(Model):
    matches: list[AIMatch] = Field(min_length=1)
    filters: list[AIFilter] | None = None
    backend_refs: list[BackendRef] | None = None


class AIProviderRouteSpec(Model):
    parent_refs: list[ParentReference] = Field(min_length=1)
    rules: list[AIRule] = Field(min_length=1)


@register
class AIProviderRoute(Resource):
    """Provider-aware match for LLM traffic, with token budgets."""

    kind_info: ClassVar[KindInfo] = KindInfo(
        kind="AIProviderRoute", plural="aiproviderroutes", short_names=("aipr",),
        printer_columns=(_GATEWAY,
                         PrinterColumn("Provider", ".spec.rules[0].matches[0].provider"), _AGE),
    )
    spec: AIProviderRouteSpec
    status: RouteStatus | None = None


class ToolRateLimit(Model):
    tools: list[ToolPattern] | None = None
    requests: int = Field(ge=1)
    window: PositiveDuration


class ToolPolicy(Model):
    allowed_tools: list[ToolPattern] | None = None
    denied_tools: list[ToolPattern] | None = None
    max_calls_per_execution: int | None = Field(default=None, ge=1)
    rate_limits: list[ToolRateLimit] | None = None


class MCPFilter(Model):
    type: Literal["ToolPolicy"]
    tool_policy: ToolPolicy | None = None

    @model_validator(mode="after")
    def _body(self) -> MCPFilter:
        if self.tool_policy is None:
            raise ValueError("toolPolicy is required when type is ToolPolicy")
        return self


class MCPMatch(Model):
    servers: list[str] | None = Field(default=None, description="URL globs.")
    tools: list[ToolPattern] | None = Field(default=None, description="Globs or /regex/.")
    methods: list[str] | None = None


class MCPRule(Model):
    matches: list[MCPMatch] = Field(min_length=1)
    filters: list[MCPFilter] | None = None


class MCPRouteSpec(Model):
    parent_refs: list[ParentReference] = Field(min_length=1)
    rules: list[MCPRule] = Field(min_length=1)


@register
class MCPRoute(Resource):
    """Match for MCP tool-call traffic, constraining which tools may be invoked."""

    kind_info: ClassVar[KindInfo] = KindInfo(
        kind="MCPRoute", plural="mcproutes", short_names=("mcpr",),
        printer_columns=_ROUTE_COLUMNS,
    )
    spec: MCPRouteSpec
    status: RouteStatus | None = None


class PortRange(Model):
    port: int = Field(ge=1, le=65535)
    end_port: int | None = Field(default=None, ge=1, le=65535)

    @model_validator(mode="after")
    def _order(self) -> PortRange:
        if self.end_port is not None and self.end_port < self.port:
            raise ValueError(f"endPort {self.end_port} is below port {self.port}")
        return self


class SourceAgent(Model):
    kind: Literal["TaskAgent", "DaemonAgent"] | None = None
    name: str = Field(min_length=1)


class L4Match(Model):
    protocol: Literal["TCP", "UDP", "TLS"] | None = None
    destination_hostnames: list[Hostname] | None = None
    destination_cid_rs: list[CIDR] | None = Field(default=None, alias="destinationCIDRs")
    ports: list[PortRange] | None = None
    source_agents: list[SourceAgent] | None = None


class L4Rule(Model):
    matches: list[L4Match] = Field(min_length=1)


class EgressL4RouteSpec(Model):
    parent_refs: list[ParentReference] = Field(min_length=1)
    rules: list[L4Rule] = Field(min_length=1)


@register
class EgressL4Route(Resource):
    """L4 routing on hostnames (SNI or DNS-snooped), CIDRs and ports."""

    kind_info: ClassVar[KindInfo] = KindInfo(
        kind="EgressL4Route", plural="egressl4routes", short_names=("el4r",),
        printer_columns=_ROUTE_COLUMNS,
    )
    spec: EgressL4RouteSpec
    status: RouteStatus | None = None
