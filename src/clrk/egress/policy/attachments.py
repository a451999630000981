"""Which policies apply to a request: those attached (GEP-713 ``targetRef`` or
``parentRefs``) to the route it matched, then those attached to its gateway. A
route's own policy wins over its gateway's for kinds where only one can apply."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

POLICY_KINDS = ("CredentialInjectionPolicy", "RateLimitPolicy", "EgressDenyPolicy",
                "LoggingPolicy", "FallbackRoutingPolicy")


@dataclass(frozen=True)
class Target:
    kind: str
    name: str


def _targets(doc: dict[str, Any]) -> list[Target]:
    spec = doc.get("spec") or {}
    refs = list(spec.get("parentRefs") or [])
    if spec.get("targetRef"):
        refs.append(spec["targetRef"])
    return [Target(r.get("kind") or "EgressGateway", r.get("name", "")) for r in refs]


@dataclass
class Policies:
    """The namespace's policies, by kind and then by name."""
    by_kind: dict[str, dict[str, dict[str, Any]]] = field(
        default_factory=lambda: {k: {} for k in POLICY_KINDS})

    def attached(self, kind: str, targets: list[Target]) -> list[dict[str, Any]]:
        """Policies of ``kind`` on the first target that has any (route before gateway),
        in name order."""
        docs = sorted(self.by_kind.get(kind, {}).values(), key=lambda d: d["metadata"]["name"])
        for target in targets:
            found = [d for d in docs if target in _targets(d)]
            if found:
                return found
        return []

    def all_attached(self, kind: str, targets: list[Target]) -> list[dict[str, Any]]:
        """Policies of ``kind`` on any of the targets (each applies: e.g. rate limits)."""
        docs = sorted(self.by_kind.get(kind, {}).values(), key=lambda d: d["metadata"]["name"])
        return [d for d in docs if any(t in _targets(d) for t in targets)]
