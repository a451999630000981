"""What the policy service decides with: the worker's current view of its namespace's
gateways, their L7 routes, the policies and Secrets, and who owns each sandbox address.
The egress plane keeps it current from its watches; the service only reads it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from clrk.egress.attribution import Attributions
from clrk.egress.policy.attachments import Policies
from clrk.egress.policy.limits import ExecutionTokens, RateWindows
from clrk.egress.policy.signing import GoogleTokens
from clrk.egress.routing import HttpRoutes


class DayBudgets(Protocol):
    """Counters every worker must share: tokens per (route, gateway, UTC day) and
    PerRoute rate windows, kept in the API server."""

    async def used(self, namespace: str, route: str, gateway: str) -> int: ...

    async def add(self, namespace: str, route: str, gateway: str, tokens: int) -> None: ...

    async def take(self, namespace: str, policy: str, key: str) -> float | None: ...


class Records(Protocol):
    def record(self, gateway: str, item: dict[str, Any]) -> None:
        """Queue a record of the namespace's ``gateway`` (shipped in batches)."""


@dataclass
class PolicyState:
    namespace: str
    gateways: dict[str, dict[str, Any]] = field(default_factory=dict)
    routes: dict[str, HttpRoutes] = field(default_factory=dict)
    policies: Policies = field(default_factory=Policies)
    secrets: dict[str, dict[str, Any]] = field(default_factory=dict)
    backends: dict[str, dict[str, Any]] = field(default_factory=dict)
    attribution: Attributions = field(default_factory=Attributions)
    windows: RateWindows = field(default_factory=RateWindows)
    execution_tokens: ExecutionTokens = field(default_factory=ExecutionTokens)
    google: GoogleTokens = field(default_factory=GoogleTokens)
    budgets: DayBudgets | None = None
    records: Records | None = None
