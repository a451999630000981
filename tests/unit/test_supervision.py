"""DaemonAgent restart decisions."""

from __future__ import annotations

from clrk.worker.agents.supervision import History, decide


def test_crash_loop_backoff_doubles_and_caps() -> None:
    h = History()
    delays = [decide("Always", 0, 1, 0.5, False, h).delay for _ in range(9)]
    assert delays == [1, 2, 4, 8, 16, 32, 60, 60, 60]
    assert decide("Always", 0, 1, 0.5, False, h).phase == "CrashLoopBackOff"
    assert h.restarts == 10
    ok = decide("Always", 0, 1, 30.0, False, h)  # a healthy run resets the backoff
    assert ok.delay == 0 and ok.phase == "Running"
    assert decide("Always", 0, 1, 0.5, False, h).delay == 1


def test_policies() -> None:
    assert decide("Never", 0, 0, 1, False, History()).restart is False
    never = decide("Never", 0, 2, 1, False, History())
    assert (never.restart, never.phase) == (False, "Failed")
    assert decide("OnFailure", 0, 0, 1, False, History()).phase == "Completed"
    assert decide("OnFailure", 0, 1, 1, False, History()).restart is True
    assert decide("Always", 0, 0, 1, False, History()).restart is True


def test_max_restarts_and_recycling() -> None:
    h = History()
    assert decide("Always", 2, 1, 20, False, h).restart
    assert decide("Always", 2, 1, 20, False, h).restart
    last = decide("Always", 2, 1, 20, False, h)
    assert not last.restart and "maxRestarts" in last.reason
    recycled = decide("Always", 2, None, 3600, True, History())
    assert recycled.restart and recycled.delay == 0
