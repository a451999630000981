"""Work queue, backoff and the revision helpers."""

from __future__ import annotations

import asyncio
from typing import Any

from clrk.api.agents import AgentTemplate
from clrk.controllers.conditions import set_condition
from clrk.controllers.revisions import revision_name, template_hash, to_prune
from clrk.controllers.runtime import Backoff, WorkQueue


def test_revision_names_and_hashes() -> None:
    assert revision_name("word-count", 1) == "word-count-00001"
    assert revision_name("a", 12345) == "a-12345"
    a = AgentTemplate.model_validate({"spec": {"image": "x", "args": ["1"]}})
    b = AgentTemplate.model_validate({"spec": {"args": ["1"], "image": "x"}})
    c = AgentTemplate.model_validate({"spec": {"image": "x", "args": ["2"]}})
    assert template_hash(a) == template_hash(b) != template_hash(c)


def test_prune_keeps_newest_and_pinned() -> None:
    revs: list[dict[str, Any]] = [{"metadata": {"name": f"r{i}"}, "spec": {"generation": i}}
                                  for i in range(1, 15)]
    assert to_prune(revs, 10, set()) == ["r4", "r3", "r2", "r1"]
    assert to_prune(revs, 10, {"r2"}) == ["r4", "r3", "r1"]
    assert to_prune(revs[:3], 10, set()) == []


def test_backoff_grows_caps_and_resets() -> None:
    b = Backoff(base=0.5, cap=4)
    key = ("ns", "a")
    assert [b.next(key) for _ in range(5)] == [0.5, 1, 2, 4, 4]
    b.reset(key)
    assert b.next(key) == 0.5


async def test_work_queue_dedups_and_never_runs_a_key_twice() -> None:
    q = WorkQueue()
    q.add(("n", "a"))
    q.add(("n", "a"))
    q.add(("n", "b"))
    assert len(q) == 2
    key = await q.get()
    q.add(key)  # while active: deferred, not queued
    assert len(q) == 1
    q.done(key)  # now it comes back once
    assert len(q) == 2
    q.add_after(("n", "c"), 0.01)
    await asyncio.sleep(0.05)
    assert len(q) == 3
    q.close()


def test_condition_transition_time_moves_only_on_flips() -> None:
    c1 = set_condition([], "Ready", False, "No", "m", 1)
    t1 = c1[0]["lastTransitionTime"]
    c1[0]["lastTransitionTime"] = "2000-01-01T00:00:00Z"
    c2 = set_condition(c1, "Ready", False, "Still", "m2", 2)
    assert c2[0]["lastTransitionTime"] == "2000-01-01T00:00:00Z"
    assert c2[0]["observedGeneration"] == 2
    c3 = set_condition(c2, "Ready", True, "Yes", "", 2)
    assert c3[0]["lastTransitionTime"] != "2000-01-01T00:00:00Z" and t1
