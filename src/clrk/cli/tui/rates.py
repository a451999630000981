"""Per-minute rates over a sliding minute (not running totals): requests, tokens in and
out, cost, and latency percentiles of the calls an agent made through its gateway.

Each call is counted at its own time (the span's), so a TUI that attaches late still
sees the minute that passed; calls older than the window are forgotten.
"""

from __future__ import annotations

import collections
import statistics
from dataclasses import dataclass, field

WINDOW_SECONDS = 60.0

# List prices in USD per million tokens (input, output), by model-name prefix; the
# longest prefix wins. A model not listed has no cost (shown as "-"), never a guess.
PRICES: dict[str, tuple[float, float]] = {
    "claude-opus-4": (15.0, 75.0), "claude-sonnet-4": (3.0, 15.0),
    "claude-haiku-4-5": (1.0, 5.0), "claude-3-5-haiku": (0.8, 4.0),
    "claude-3-haiku": (0.25, 1.25), "gpt-4o-mini": (0.15, 0.6), "gpt-4o": (2.5, 10.0),
    "gpt-4.1-mini": (0.4, 1.6), "gpt-4.1-nano": (0.1, 0.4), "gpt-4.1": (2.0, 8.0),
    "gpt-5-mini": (0.25, 2.0), "gpt-5-nano": (0.05, 0.4), "gpt-5": (1.25, 10.0),
    "o4-mini": (1.1, 4.4), "gemini-2.5-pro": (1.25, 10.0),
    "gemini-2.5-flash-lite": (0.1, 0.4), "gemini-2.5-flash": (0.3, 2.5),
    "gemini-2.0-flash": (0.1, 0.4),
}


def cost(model: str, tokens_in: int, tokens_out: int) -> float | None:
    """USD of one call, or None for a model without a known price."""
    match = max((p for p in PRICES if model.startswith(p)), key=len, default=None)
    if match is None:
        return None
    price_in, price_out = PRICES[match]
    return (tokens_in * price_in + tokens_out * price_out) / 1e6


@dataclass(frozen=True)
class Call:
    at: float  # epoch seconds
    duration_ms: float
    tokens_in: int = 0
    tokens_out: int = 0
    cost: float | None = None


@dataclass(frozen=True)
class Rates:
    requests: float
    tokens_in: float
    tokens_out: float
    cost: float | None
    p50_ms: float | None
    p95_ms: float | None


@dataclass
class Window:
    """The calls of the last minute (of one agent, or of all)."""

    calls: collections.deque[Call] = field(default_factory=collections.deque)
    total_tokens: int = 0
    total_cost: float = 0.0

    def add(self, call: Call) -> None:
        self.calls.append(call)
        self.total_tokens += call.tokens_in + call.tokens_out
        self.total_cost += call.cost or 0.0

    def rates(self, now: float) -> Rates:
        while self.calls and self.calls[0].at < now - WINDOW_SECONDS:
            self.calls.popleft()
        recent = [c for c in self.calls if now - WINDOW_SECONDS <= c.at <= now]
        costs = [c.cost for c in recent if c.cost is not None]
        durations = sorted(c.duration_ms for c in recent)
        p50 = p95 = None
        if len(durations) == 1:
            p50 = p95 = durations[0]
        elif durations:
            cuts = statistics.quantiles(durations, n=100, method="inclusive")
            p50, p95 = cuts[49], cuts[94]
        return Rates(float(len(recent)), float(sum(c.tokens_in for c in recent)),
                     float(sum(c.tokens_out for c in recent)),
                     sum(costs) if costs else None, p50, p95)
