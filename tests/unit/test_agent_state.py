"""An agent's phase as `clrk agents get` derives it from its status."""

from __future__ import annotations

from typing import Any

from clrk.api.agent_state import agent_state


def agent(*conds: tuple[str, str, str], **status: Any) -> dict[str, Any]:
    return {"metadata": {"generation": 1},
            "status": {"observedGeneration": 1, **status,
                       "conditions": [{"type": t, "status": s, "reason": r, "message": r}
                                      for t, s, r in conds]}}


def test_all_true_is_ready() -> None:
    assert agent_state(agent(("Accepted", "True", "Valid"))).summary() == "Ready"


def test_progress_is_pending_and_a_failure_is_failed() -> None:
    assert agent_state(agent(("ImageReady", "False", "Pulling"))).summary() == \
        "Pending (Pulling)"
    assert agent_state(agent(("ImageReady", "False", "Pulling"),
                             ("WorkerPoolReady", "False", "WorkerPoolNotFound"))).summary() \
        == "Failed (WorkerPoolNotFound)"


def test_a_failed_condition_is_the_cause_of_a_failed_process() -> None:
    failed = agent(("ImageReady", "False", "ImagePullFailed"), phase="Failed")
    assert agent_state(failed).summary() == "Failed (ImagePullFailed)"
    crashing = agent(("ImageReady", "True", "ImagePulled"), phase="CrashLoopBackOff")
    assert agent_state(crashing).summary() == "Failed (CrashLoopBackOff)"


def test_a_generation_not_yet_observed_is_pending() -> None:
    obj = agent(("Accepted", "True", "Valid"))
    obj["metadata"]["generation"] = 2
    assert agent_state(obj).phase == "Pending"
