"""Routes that attach to an EgressGateway listener: AI providers, MCP servers, raw L4."""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, ClassVar, Literal

from pydantic import AfterValidator, Field, WithJsonSchema, model_validator

from clrk.api.attachment import ROUTE_COLUMNS, RouteStatus
from clrk.api.base import KindInfo, Model, PrinterColumn, Resource
from clrk.api.meta import ParentReference, PositiveDuration
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
_ROUTE_COLUMNS = (_GATEWAY, *ROUTE_COLUMNS, _AGE)
_PARENT_REFS = "The EgressGateways the route attaches to, in its own namespace."


class TokenBudget(Model):
    """Token limits on the requests a rule matches; past one, calls get 429."""

    max_tokens_per_execution: int | None = Field(
        default=None, ge=1, description="Most tokens (input and output) one execution may "
        "use under this rule.")
    max_tokens_per_day: int | None = Field(
        default=None, ge=1, description="Most tokens per UTC day, counted per route and "
        "gateway across every worker and kept across restarts.")
    max_output_tokens_per_request: int | None = Field(
        default=None, ge=1, description="Cap on a request's output tokens: a request asking "
        "for more is refused; one that names no limit is given this one.")


class AIFilter(Model):
    """A filter on the requests a rule matches."""

    type: Literal["TokenBudget"] = Field(description="The filter's kind; TokenBudget is the "
                                         "only one.")
    token_budget: TokenBudget | None = Field(default=None, description="The token limits; "
                                             "required when type is TokenBudget.")

    @model_validator(mode="after")
    def _body(self) -> AIFilter:
        if self.type == "TokenBudget" and self.token_budget is None:
            raise ValueError("tokenBudget is required when type is TokenBudget")
        return self


class AIMatch(Model):
    """Which LLM requests a rule covers."""

    provider: Provider = Field(
        description="The API the requests speak: openai, anthropic, google, azure-openai, "
        "bedrock, or custom (its hosts come from the rule's backendRefs). It decides the "
        "hosts matched and how requests and usage are read.")
    models: list[str] | None = Field(
        default=None, description="Model-name globs, e.g. claude-*; unset: any model. A "
        "request whose model cannot be read does not match when this is set.")
    endpoints: list[str] | None = Field(
        default=None, description="Request path globs, e.g. /v1/messages (the query string "
        "is ignored); unset: any path.")


class BackendRef(Model):
    """A Backend a rule's requests may be sent to."""

    name: str = Field(min_length=1, description="Name of a Backend in the route's "
                      "namespace.")
    weight: int = Field(default=1, ge=0, description="Relative share of the requests "
                        "(default 1); a Backend of weight 0 gets none while another has "
                        "weight, but can still be fallen back to.")


class AIRule(Model):
    """LLM requests to match, and what applies to them."""

    matches: list[AIMatch] = Field(min_length=1, description="The requests the rule covers; "
                                   "any one match suffices.")
    filters: list[AIFilter] | None = Field(default=None, description="Token budgets for "
                                           "the matched requests.")
    backend_refs: list[BackendRef] | None = Field(
        default=None, description="Backends the matched requests go to instead of the host "
        "they were sent to, picked by weight; a FallbackRoutingPolicy on the route retries "
        "on the others.")


class AIProviderRouteSpec(Model):
    """The desired state of an AIProviderRoute."""

    parent_refs: list[ParentReference] = Field(min_length=1, description=_PARENT_REFS)
    rules: list[AIRule] = Field(min_length=1, description="The first rule whose matches "
                                "cover a request applies to it.")


@register
class AIProviderRoute(Resource):
    """Provider-aware match for LLM traffic, with token budgets."""

    kind_info: ClassVar[KindInfo] = KindInfo(
        kind="AIProviderRoute", plural="aiproviderroutes", short_names=("aipr",),
        printer_columns=(_GATEWAY,
                         PrinterColumn("Provider", ".spec.rules[0].matches[0].provider"),
                         *ROUTE_COLUMNS, _AGE),
    )
    spec: AIProviderRouteSpec = Field(description="The desired state of the "
                                      "AIProviderRoute.")
    status: RouteStatus | None = Field(default=None, description="Whether each gateway in "
                                       "spec.parentRefs takes the route; written by clrk.")


class ToolRateLimit(Model):
    """A cap on tool calls per time window, per agent."""

    tools: list[ToolPattern] | None = Field(default=None, description="Tool-name globs or "
                                            "/regex/ this limit counts; unset: every tool.")
    requests: int = Field(ge=1, description="Calls allowed per window, per agent.")
    window: PositiveDuration = Field(description="The window, a Go duration such as 1m.")


class ToolPolicy(Model):
    """Which tools may be called, and how often."""

    allowed_tools: list[ToolPattern] | None = Field(
        default=None, description="Tools that may be called (globs or /regex/); unset: "
        "every tool not denied. tools/list answers are filtered the same way.")
    denied_tools: list[ToolPattern] | None = Field(
        default=None, description="Tools that may never be called (globs or /regex/); "
        "wins over allowedTools.")
    max_calls_per_execution: int | None = Field(
        default=None, ge=1, description="Most tools/call requests one execution may make "
        "under this rule.")
    rate_limits: list[ToolRateLimit] | None = Field(default=None, description="Caps on "
                                                    "call rates, per agent.")


class MCPFilter(Model):
    """A filter on the MCP calls a rule matches."""

    type: Literal["ToolPolicy"] = Field(description="The filter's kind; ToolPolicy is the "
                                        "only one.")
    tool_policy: ToolPolicy | None = Field(default=None, description="The tool policy; "
                                           "required.")

    @model_validator(mode="after")
    def _body(self) -> MCPFilter:
        if self.tool_policy is None:
            raise ValueError("toolPolicy is required when type is ToolPolicy")
        return self


class MCPMatch(Model):
    """Which MCP calls a rule covers."""

    servers: list[str] | None = Field(
        default=None, description="MCP server URL globs, e.g. https://mcp.example.com/*; "
        "each must name a host, whose TLS the gateway terminates.")
    tools: list[ToolPattern] | None = Field(
        default=None, description="Tool-name globs or /regex/ (full match) for tools/call; "
        "unset: every tool.")
    methods: list[str] | None = Field(default=None, description="JSON-RPC methods, e.g. "
                                      "tools/call; unset: every method.")


class MCPRule(Model):
    """MCP calls to match, and the tool policy for them."""

    matches: list[MCPMatch] = Field(min_length=1, description="The calls the rule covers; "
                                    "any one match suffices.")
    filters: list[MCPFilter] | None = Field(default=None, description="Tool policies for "
                                            "the matched calls.")


class MCPRouteSpec(Model):
    """The desired state of an MCPRoute."""

    parent_refs: list[ParentReference] = Field(min_length=1, description=_PARENT_REFS)
    rules: list[MCPRule] = Field(
        min_length=1, description="The first rule that covers a call applies; under "
        "deny-all a call no rule covers is refused.")


@register
class MCPRoute(Resource):
    """Match for MCP tool-call traffic, constraining which tools may be invoked."""

    kind_info: ClassVar[KindInfo] = KindInfo(
        kind="MCPRoute", plural="mcproutes", short_names=("mcpr",),
        printer_columns=_ROUTE_COLUMNS,
    )
    spec: MCPRouteSpec = Field(description="The desired state of the MCPRoute.")
    status: RouteStatus | None = Field(default=None, description="Whether each gateway in "
                                       "spec.parentRefs takes the route; written by clrk.")


class PortRange(Model):
    """A destination port, or a range of them."""

    port: int = Field(ge=1, le=65535, description="The port, or the first of the range.")
    end_port: int | None = Field(
        default=None, ge=1, le=65535, description="Last port of the range (inclusive); "
        "unset: port alone. Only the first 64 ports of a range are routed.")

    @model_validator(mode="after")
    def _order(self) -> PortRange:
        if self.end_port is not None and self.end_port < self.port:
            raise ValueError(f"endPort {self.end_port} is below port {self.port}")
        return self


class SourceAgent(Model):
    """An agent whose traffic a match applies to."""

    kind: Literal["TaskAgent", "DaemonAgent"] | None = Field(
        default=None, description="TaskAgent or DaemonAgent; unset: either.")
    name: str = Field(min_length=1, description="Name of the agent, in the route's "
                      "namespace.")


class L4Match(Model):
    """Destinations (hostnames or CIDRs, and ports) a rule allows."""

    protocol: Literal["TCP", "UDP", "TLS"] | None = Field(
        default=None, description="TCP, UDP or TLS; unset: TCP (TLS included). UDP is "
        "relayed by the worker, not Envoy.")
    destination_hostnames: list[Hostname] | None = Field(
        default=None, description="Exact names or *.suffix wildcards. The worker's DNS "
        "answers them with virtual addresses, so a connection is matched by the name the "
        "agent resolved, on any protocol.")
    destination_cid_rs: list[CIDR] | None = Field(
        default=None, alias="destinationCIDRs", description="Destination networks, e.g. "
        "10.0.0.0/8 or 2001:db8::/32.")
    ports: list[PortRange] | None = Field(default=None, description="Destination ports or "
                                          "ranges; unset: every port.")
    source_agents: list[SourceAgent] | None = Field(
        default=None, description="Agents the match applies to; unset: every agent whose "
        "traffic goes through the gateway.")


class L4Rule(Model):
    """Destinations the agents may reach."""

    matches: list[L4Match] = Field(min_length=1, description="The destinations the rule "
                                   "allows; any one match suffices.")


class EgressL4RouteSpec(Model):
    """The desired state of an EgressL4Route."""

    parent_refs: list[ParentReference] = Field(min_length=1, description=_PARENT_REFS)
    rules: list[L4Rule] = Field(min_length=1, description="Rules; a connection any of "
                                "them allows goes through.")


@register
class EgressL4Route(Resource):
    """L4 routing on hostnames (SNI or DNS-snooped), CIDRs and ports."""

    kind_info: ClassVar[KindInfo] = KindInfo(
        kind="EgressL4Route", plural="egressl4routes", short_names=("el4r",),
        printer_columns=_ROUTE_COLUMNS,
    )
    spec: EgressL4RouteSpec = Field(description="The desired state of the EgressL4Route.")
    status: RouteStatus | None = Field(default=None, description="Whether each gateway in "
                                       "spec.parentRefs takes the route; written by clrk.")
