"""An agent's phase, derived from what its status holds (no field of its own says it).

TaskAgents and DaemonAgents carry conditions (Accepted, WorkerPoolReady,
EgressConfigured, ImageReady, RevisionPinned, Scheduled: each True when all is well) and
a DaemonAgent also the phase of its process. From them:

- Pending: the controllers have not reported on this generation yet, or something is
  under way (the image is being pulled, the pool has no ready worker yet);
- Failed: a condition is False for a reason only a change can fix (the image cannot
  be pulled, the pool or a gateway does not exist, a pinned revision is missing), or a
  DaemonAgent's process is crash-looping or failed;
- Ready: every condition is True.

A ``Ready`` condition, should the controllers ever write one, is taken as it is."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# False conditions that say something is under way, not wrong.
IN_PROGRESS = frozenset({"Pulling", "WorkerPoolNotReady"})
# A DaemonAgent's process phases that are failures.
FAILED_PROCESS = frozenset({"CrashLoopBackOff", "Failed"})


@dataclass(frozen=True)
class AgentState:
    """The derived phase, and the reason and message of the condition that decided it."""

    phase: str
    reason: str = ""
    message: str = ""

    def summary(self) -> str:
        """``Ready``, or the phase with its reason: ``Failed (ImagePullFailed)``."""
        return f"{self.phase} ({self.reason})" if self.reason else self.phase


def conditions(obj: dict[str, Any]) -> list[dict[str, Any]]:
    return list((obj.get("status") or {}).get("conditions") or [])


def agent_state(obj: dict[str, Any]) -> AgentState:
    status = obj.get("status") or {}
    conds = conditions(obj)
    ready = next((c for c in conds if c.get("type") == "Ready"), None)
    if ready is not None:
        if ready.get("status") == "True":
            return AgentState("Ready")
        phase = "Pending" if ready.get("reason") in IN_PROGRESS else "Failed"
        return AgentState(phase, str(ready.get("reason") or ""),
                          str(ready.get("message") or ""))
    generation = (obj.get("metadata") or {}).get("generation")
    observed = status.get("observedGeneration")
    if not conds or (generation is not None and observed is not None
                     and observed < generation):
        return AgentState("Pending", "NotObserved",
                          "the controllers have not reported on this generation yet")
    bad = [c for c in conds if c.get("status") != "True"]
    failed = [c for c in bad if c.get("status") == "False"
              and c.get("reason") not in IN_PROGRESS]
    process = status.get("phase")
    if process in FAILED_PROCESS and not failed:  # a failed condition is the cause
        return AgentState("Failed", str(process), str(status.get("message") or ""))
    if not bad:
        return AgentState("Ready")
    first = (failed or bad)[0]
    return AgentState("Failed" if failed else "Pending", str(first.get("reason") or ""),
                      str(first.get("message") or ""))
