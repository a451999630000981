"""The scheduler's pick among a pool's workers: a warm sandbox for the revision (while
it may still be idle), then the image cached, then spare capacity, then least in
flight; draining and silent workers are never picked."""

from __future__ import annotations

import time
from typing import Any

from clrk.controllers.agents import DAEMON_RECHECK_SECONDS
from clrk.scheduler.registry import STALE_AFTER, WorkerInfo, WorkerRegistry
from clrk.serving import header_value
from clrk.worker.main import HEARTBEAT_SECONDS
from clrk.worker.protocol import ALIVE_SECONDS, ALIVE_TIMEOUT


def beat(registry: WorkerRegistry, name: str, **doc: Any) -> WorkerInfo:
    info = WorkerInfo.from_heartbeat("default", "default", {
        "name": name, "url": f"http://{name}", "capacity": 4, **doc})
    registry.heartbeat(info)
    return info


def names(workers: list[WorkerInfo]) -> list[str]:
    return [w.name for w in workers]


def test_pick_order() -> None:
    r = WorkerRegistry()
    beat(r, "a", inFlight=0)
    beat(r, "b", inFlight=0, cachedImages=["sha256:x"])
    beat(r, "c", inFlight=3, cachedImages=["sha256:x"], warmRevisions=["rev-1"],
         warmSandboxes=1)
    assert names(r.candidates("default", "default", "rev-1", "sha256:x")) == ["c", "b", "a"]
    assert names(r.candidates("default", "default", "rev-2", "sha256:x")) == ["b", "c", "a"]
    assert names(r.candidates("default", "default", "rev-2", "sha256:y")) == ["a", "b", "c"]


def test_a_burst_is_not_all_sent_after_one_warm_sandbox() -> None:
    r = WorkerRegistry()
    warm = beat(r, "warm", warmRevisions=["rev-1"], warmSandboxes=1, capacity=32)
    beat(r, "cold", capacity=32)
    picked = []
    for _ in range(20):
        best = r.candidates("default", "default", "rev-1")[0]
        r.reserve(best)
        picked.append(best.name)
    assert picked[0] == "warm"
    assert 9 <= picked.count("cold") <= 11, picked  # the rest spread by load
    r.heartbeat(warm)  # a new heartbeat: its own counts again
    assert r.candidates("default", "default", "rev-1")[0].name == "warm"


def test_full_draining_and_silent_workers_are_not_picked() -> None:
    r = WorkerRegistry()
    beat(r, "full", inFlight=4)
    beat(r, "draining", draining=True)
    silent = beat(r, "silent")
    silent.seen = time.monotonic() - STALE_AFTER - 1
    beat(r, "ok")
    assert names(r.candidates("default", "default")) == ["ok"]
    assert r.ready_workers("default", "default") == 2  # full is ready, only busy


def test_a_lost_worker_is_noticed_within_bounds() -> None:
    # Daemons move within 10 s of their worker's last heartbeat.
    assert STALE_AFTER + DAEMON_RECHECK_SECONDS < 10
    assert STALE_AFTER >= 3 * HEARTBEAT_SECONDS  # one late heartbeat is not a loss
    # A running execution hears from its worker at least every ALIVE_SECONDS.
    assert ALIVE_TIMEOUT >= 3 * ALIVE_SECONDS


def test_a_reason_always_fits_in_a_header() -> None:
    # h11 refuses a header value with trailing blanks, newlines or control characters,
    # and the caller then gets no response at all.
    assert header_value("ImagePullFailed: registry r:5000 is unreachable: ") == \
        "ImagePullFailed: registry r:5000 is unreachable:"
    assert header_value("exit 1\nTraceback:\r\n\tboom \x00é") == "exit 1 Traceback: boom"
    assert len(header_value("x" * 2000)) == 512
