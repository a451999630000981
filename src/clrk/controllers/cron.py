"""Cron triggers for TaskAgents: `spec.schedule` fires `invoke` with `scheduleInput`.

At most once per fire: the fire time is written to status.lastScheduleTime (with the
object's resourceVersion as a precondition) before the invocation is sent, so a
second controller or a restart never fires it again. No backfill: fires missed while
nothing ran are skipped, not replayed.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from croniter import croniter
from lightkube import ApiError, AsyncClient
from lightkube.types import PatchType

from clrk.api.agents import TaskAgent
from clrk.api.meta import parse_duration
from clrk.client import get_or_none, resource_class
from clrk.controllers import events
from clrk.controllers.conditions import set_condition
from clrk.controllers.runtime import Controller, Key

log = logging.getLogger("clrk.controllers.cron")
Invoke = Callable[[str, str, bytes], Awaitable[tuple[int, str]]]
GRACE = dt.timedelta(seconds=30)
_FMT = "%Y-%m-%dT%H:%M:%SZ"


def _parse(ts: str) -> dt.datetime:
    return dt.datetime.strptime(ts, _FMT).replace(tzinfo=dt.UTC)


def _fmt(t: dt.datetime) -> str:
    return t.astimezone(dt.UTC).strftime(_FMT)


def next_fire(schedule: str, after: dt.datetime) -> dt.datetime:
    """The first fire strictly after ``after`` (UTC)."""
    text = schedule.strip()
    if text.startswith("@every"):
        step = parse_duration(text[len("@every"):].strip())
        return after + step
    nxt: dt.datetime = croniter(text, after).get_next(dt.datetime)
    return nxt


def due(schedule: str, last: dt.datetime, now: dt.datetime) -> tuple[dt.datetime | None,
                                                                      dt.datetime]:
    """(the fire to run now, or None; the next fire after that)."""
    fire = next_fire(schedule, last)
    if fire > now:
        return None, fire
    # Skip everything missed except the most recent fire, and that only if it is fresh.
    latest = fire
    while (following := next_fire(schedule, latest)) <= now:
        latest = following
    return (latest if now - latest <= GRACE else None), next_fire(schedule, latest)


def cron_controller(client: AsyncClient, invoke: Invoke, concurrency: int) -> Controller:
    res = resource_class(TaskAgent)
    running: set[asyncio.Task[None]] = set()

    async def fire(raw: dict[str, Any], when: dt.datetime) -> None:
        md = raw["metadata"]
        data = raw["spec"].get("scheduleInput")
        body = json.dumps({} if data is None else data).encode()
        try:
            status, reason = await invoke(md["namespace"], md["name"], body)
        except Exception as err:  # the fire is spent either way: at most once
            status, reason = 0, str(err)
        ok = status == 200
        await events.emit(client, raw, "CronFired" if ok else "CronFireFailed",
                          f"fire at {_fmt(when)}: HTTP {status}" + (f": {reason}" if reason
                                                                   else ""),
                          "Normal" if ok else "Warning")

    async def reconcile(key: Key) -> float | None:
        ns, name = key
        raw = await get_or_none(client, res, name, ns)
        if raw is None or raw["metadata"].get("deletionTimestamp"):
            return None
        schedule = raw["spec"].get("schedule")
        status = dict(raw.get("status") or {})
        gen = raw["metadata"]["generation"]
        if not schedule:
            if "nextScheduleTime" in status or any(
                    c.get("type") == "Scheduled" for c in status.get("conditions") or []):
                status.pop("nextScheduleTime", None)
                status["conditions"] = [c for c in status.get("conditions") or []
                                        if c.get("type") != "Scheduled"]
                await client.patch(res.Status, name, {"status": {
                    "nextScheduleTime": None, "conditions": status["conditions"]}},
                    namespace=ns, patch_type=PatchType.MERGE)
            return None
        now = dt.datetime.now(dt.UTC).replace(microsecond=0)
        last_text = status.get("lastScheduleTime") or raw["metadata"]["creationTimestamp"]
        fire_at, upcoming = due(schedule, _parse(last_text), now)
        new = dict(status)
        if fire_at is not None:
            new["lastScheduleTime"] = _fmt(fire_at)
        new["nextScheduleTime"] = _fmt(upcoming)
        new["conditions"] = set_condition(status.get("conditions") or [], "Scheduled", True,
                                          "Scheduled", f"next fire at {_fmt(upcoming)}", gen)
        if new != status:
            patch: dict[str, Any] = {"metadata": {"resourceVersion":
                                                  raw["metadata"]["resourceVersion"]},
                                     "status": new}
            try:
                await client.patch(res.Status, name, patch, namespace=ns,
                                   patch_type=PatchType.MERGE)
            except ApiError as err:
                if err.status.code == 409:  # someone else moved first: look again
                    return 0.1
                raise
        if fire_at is not None:
            task = asyncio.create_task(fire(raw, fire_at))
            running.add(task)
            task.add_done_callback(running.discard)
        return max(0.05, (upcoming - dt.datetime.now(dt.UTC)).total_seconds())

    return Controller(name="cron", primary=TaskAgent, reconcile=reconcile,
                      concurrency=concurrency)
