"""The L7 side of a gateway: which hostnames it terminates TLS for (the hosts of its
AIProviderRoutes and MCPRoutes), and which rule a request matches.

A request to a terminated host that no rule matches is denied under ``deny-all``:
terminating a host for one route never opens it for everything else.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from clrk.egress.l4 import host_matches

HTTPS = 443
# Where each provider's API lives; ``custom`` has no default host.
PROVIDER_HOSTS: dict[str, tuple[str, ...]] = {
    "anthropic": ("api.anthropic.com",),
    "openai": ("api.openai.com",),
    "google": ("generativelanguage.googleapis.com", "aiplatform.googleapis.com",
               "*-aiplatform.googleapis.com"),
    "azure-openai": ("*.openai.azure.com",),
    "bedrock": ("bedrock-runtime.*.amazonaws.com",),
}


def glob_or_regex(pattern: str, value: str) -> bool:
    """``/re/`` is a full-match regular expression; anything else is a glob."""
    if len(pattern) >= 2 and pattern.startswith("/") and pattern.endswith("/"):
        return re.fullmatch(pattern[1:-1], value) is not None
    return fnmatch.fnmatchcase(value, pattern)


@dataclass(frozen=True)
class AIRule:
    route: str
    index: int
    provider: str
    hosts: tuple[str, ...]
    models: tuple[str, ...]
    endpoints: tuple[str, ...]
    budget: dict[str, int] = field(default_factory=dict)
    backends: tuple[tuple[str, int], ...] = ()  # (Backend name, weight)

    @property
    def name(self) -> str:
        return f"{self.route}/{self.index}"

    def matches(self, host: str, path: str, model: str | None) -> bool:
        if not any(host_matches(h, host) for h in self.hosts):
            return False
        bare = path.split("?", 1)[0]
        if self.endpoints and not any(fnmatch.fnmatchcase(bare, e) for e in self.endpoints):
            return False
        return not self.models or (model is not None and any(
            fnmatch.fnmatchcase(model, m) for m in self.models))


@dataclass(frozen=True)
class MCPRule:
    route: str
    index: int
    servers: tuple[str, ...]  # URL globs ("" = any server)
    tools: tuple[str, ...]
    methods: tuple[str, ...]
    tool_policy: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return f"{self.route}/{self.index}"

    @property
    def hosts(self) -> tuple[str, ...]:
        return tuple(urlsplit(s).hostname or "" for s in self.servers if urlsplit(s).hostname)

    def serves(self, url: str) -> bool:
        return not self.servers or any(fnmatch.fnmatchcase(url, s) or
                                       fnmatch.fnmatchcase(url.rstrip("/"), s.rstrip("/*"))
                                       for s in self.servers)

    def covers(self, method: str, tool: str | None) -> bool:
        """Whether this rule's match names the JSON-RPC call (unset lists match all)."""
        if self.methods and method not in self.methods:
            return False
        return not (self.tools and tool is not None and
                    not any(glob_or_regex(t, tool) for t in self.tools))


@dataclass
class HttpRoutes:
    ai: list[AIRule] = field(default_factory=list)
    mcp: list[MCPRule] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def terminated(self, name: str) -> bool:
        """Whether a route of the gateway names this host (TLS to it is terminated)."""
        return any(host_matches(h, name) for rule in self.ai for h in rule.hosts) or \
            any(host_matches(h, name) for rule in self.mcp for h in rule.hosts)

    def host_patterns(self) -> set[str]:
        return {h for rule in self.ai for h in rule.hosts} | \
            {h for rule in self.mcp for h in rule.hosts}

    def needs_bodies(self, name: str) -> bool:
        return self.terminated(name)

    def ai_rule(self, host: str, path: str, model: str | None) -> AIRule | None:
        return next((r for r in self.ai if r.matches(host, path, model)), None)

    def ai_candidates(self, host: str) -> list[AIRule]:
        return [r for r in self.ai if any(host_matches(h, host) for h in r.hosts)]

    def mcp_rules(self, url: str) -> list[MCPRule]:
        return [r for r in self.mcp if r.serves(url)]


def _attached(route: dict[str, Any], gateway: dict[str, Any]) -> bool:
    name = gateway["metadata"]["name"]
    namespace = gateway["metadata"].get("namespace", "")
    return any(p.get("name") == name and p.get("namespace", namespace) == namespace
               and p.get("kind", "EgressGateway") == "EgressGateway"
               for p in route["spec"].get("parentRefs") or [])


def plan(gateway: dict[str, Any], ai_routes: list[dict[str, Any]],
         mcp_routes: list[dict[str, Any]], backends: dict[str, dict[str, Any]]) -> HttpRoutes:
    out = HttpRoutes()
    for route in sorted(ai_routes, key=lambda r: r["metadata"]["name"]):
        if not _attached(route, gateway):
            continue
        rname = route["metadata"]["name"]
        for i, rule in enumerate(route["spec"].get("rules") or []):
            budget: dict[str, int] = {}
            for f in rule.get("filters") or []:
                if f.get("type") == "TokenBudget":
                    budget.update({k: int(v) for k, v in (f.get("tokenBudget") or {}).items()
                                   if isinstance(v, int)})
            refs = rule.get("backendRefs") or []
            backend_hosts = tuple(backends[r["name"]]["spec"]["host"].lower() for r in refs
                                  if r.get("name") in backends)
            for ref in refs:
                if ref.get("name") not in backends:
                    out.problems.append(f"AIProviderRoute {rname}: Backend {ref.get('name')} "
                                        "does not exist")
            for match in rule.get("matches") or []:
                provider = match.get("provider") or "custom"
                hosts = PROVIDER_HOSTS.get(provider, ()) + backend_hosts
                if not hosts:
                    out.problems.append(f"AIProviderRoute {rname}: provider {provider} "
                                        "needs backendRefs naming its host")
                    continue
                out.ai.append(AIRule(rname, i, provider, hosts,
                                     tuple(match.get("models") or ()),
                                     tuple(match.get("endpoints") or ()), budget,
                                     tuple((r["name"], int(r.get("weight", 1))) for r in refs
                                           if r.get("name") in backends)))
    for route in sorted(mcp_routes, key=lambda r: r["metadata"]["name"]):
        if not _attached(route, gateway):
            continue
        rname = route["metadata"]["name"]
        for i, rule in enumerate(route["spec"].get("rules") or []):
            policy: dict[str, Any] = {}
            for f in rule.get("filters") or []:
                if f.get("type") == "ToolPolicy":
                    policy.update(f.get("toolPolicy") or {})
            for match in rule.get("matches") or []:
                servers = tuple(match.get("servers") or ())
                if not any(urlsplit(s).hostname for s in servers):
                    out.problems.append(f"MCPRoute {rname}: servers must name URLs with a "
                                        "host (e.g. https://mcp.example.com/*)")
                    continue
                out.mcp.append(MCPRule(rname, i, servers, tuple(match.get("tools") or ()),
                                       tuple(match.get("methods") or ()), policy))
    return out
