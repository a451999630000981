"""When cron fires: at most once per fire, no backfill."""

from __future__ import annotations

import datetime as dt

from clrk.controllers.cron import GRACE, due, next_fire

T0 = dt.datetime(2026, 1, 1, 12, 0, 0, tzinfo=dt.UTC)


def s(n: float) -> dt.timedelta:
    return dt.timedelta(seconds=n)


def test_next_fire() -> None:
    assert next_fire("@every 2s", T0) == T0 + s(2)
    assert next_fire("*/5 * * * *", T0) == T0 + dt.timedelta(minutes=5)
    assert next_fire("@hourly", T0) == T0 + dt.timedelta(hours=1)


def test_not_yet_due() -> None:
    assert due("@every 10s", T0, T0 + s(3)) == (None, T0 + s(10))


def test_due_fires_once_then_waits() -> None:
    fire, upcoming = due("@every 10s", T0, T0 + s(10))
    assert fire == T0 + s(10) and upcoming == T0 + s(20)
    # With the fire recorded as the last one, it is not due again.
    assert due("@every 10s", fire, T0 + s(11)) == (None, T0 + s(20))


def test_no_backfill_after_downtime() -> None:
    # Down for an hour: only the latest fire may run, and only if it is fresh.
    fire, upcoming = due("@every 10s", T0, T0 + dt.timedelta(hours=1) + s(3))
    assert fire == T0 + dt.timedelta(hours=1) and upcoming == fire + s(10)
    fire, upcoming = due("0 * * * *", T0, T0 + dt.timedelta(hours=5, minutes=30))
    assert fire is None  # the 17:00 fire is 30 minutes stale
    assert upcoming == T0 + dt.timedelta(hours=6)
    assert dt.timedelta(minutes=30) > GRACE
