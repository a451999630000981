"""Request-rate windows and per-execution token counts, kept by the worker.

An execution runs on one worker, so its counts live there; a rate limit counts the
requests this worker's gateway saw (like Envoy's own local rate limit). Day budgets
must be exact across workers and survive restarts, so they live in the API server
(``DayBudgets``).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

MAX_KEYS = 100_000


@dataclass
class RateWindows:
    """Fixed windows: ``requests`` per ``window`` seconds per key."""
    _windows: dict[str, tuple[float, int]] = field(default_factory=dict)

    def take(self, key: str, requests: int, window: float,
             now: float | None = None) -> float | None:
        """Count one request; None if allowed, else seconds until the window reopens."""
        now = time.monotonic() if now is None else now
        start, count = self._windows.get(key, (now, 0))
        if now - start >= window:
            start, count = now, 0
        if count >= requests:
            return max(start + window - now, 0.001)
        if len(self._windows) >= MAX_KEYS:
            self._prune(now, window)
        self._windows[key] = (start, count + 1)
        return None

    def _prune(self, now: float, window: float) -> None:
        for key, (start, _) in list(self._windows.items()):
            if now - start >= window:
                del self._windows[key]


def retry_after(seconds: float) -> str:
    return str(max(1, math.ceil(seconds)))


@dataclass
class ExecutionTokens:
    """Tokens each execution has used, per route rule."""
    _used: dict[tuple[str, str], int] = field(default_factory=dict)

    def used(self, invocation: str, rule: str) -> int:
        return self._used.get((invocation, rule), 0)

    def add(self, invocation: str, rule: str, tokens: int) -> None:
        if len(self._used) >= MAX_KEYS:
            self._used.clear()  # executions this old have long finished
        self._used[(invocation, rule)] = self.used(invocation, rule) + tokens
