"""DaemonAgent restart decisions (design §4), as a pure function of the run history.

Always restarts every exit, OnFailure only non-zero exits, Never none. A run shorter
than 10 s counts as a crash loop: the delay doubles from 1 s up to 60 s; a run that
lasted 10 s or more resets it. maxRestarts (0 = unlimited) caps restarts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

HEALTHY_RUN = 10.0
BASE_DELAY = 1.0
MAX_DELAY = 60.0
Policy = Literal["Always", "OnFailure", "Never"]


@dataclass(frozen=True)
class Decision:
    restart: bool
    delay: float
    phase: str  # Running | CrashLoopBackOff | Completed | Failed
    reason: str


@dataclass
class History:
    restarts: int = 0
    crash_streak: int = 0  # consecutive short runs


def decide(policy: Policy, max_restarts: int, exit_code: int | None, ran_for: float,
           recycled: bool, history: History) -> Decision:
    """What to do after a run ended (``recycled``: we stopped it at maxLifetimeSeconds)."""
    if recycled:
        history.crash_streak = 0
        return Decision(True, 0.0, "Running", "recycled after maxLifetimeSeconds")
    failed = exit_code != 0
    if policy == "Never" or (policy == "OnFailure" and not failed):
        phase = "Failed" if failed else "Completed"
        return Decision(False, 0.0, phase, f"exited with code {exit_code}; restartPolicy "
                        f"{policy}")
    if max_restarts and history.restarts >= max_restarts:
        return Decision(False, 0.0, "Failed", f"exited with code {exit_code}; maxRestarts "
                        f"({max_restarts}) reached")
    if ran_for < HEALTHY_RUN:
        delay = min(MAX_DELAY, BASE_DELAY * 2 ** history.crash_streak)
        history.crash_streak += 1
        phase = "CrashLoopBackOff"
    else:
        history.crash_streak = 0
        delay = 0.0
        phase = "Running"
    history.restarts += 1
    return Decision(True, delay, phase, f"exited with code {exit_code} after {ran_for:.1f}s")
