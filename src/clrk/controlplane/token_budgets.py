"""Counters every worker must share: token counters for AIProviderRoute day budgets
(per namespace, route, gateway and UTC day, in the API server's own SQLite file so a
restart of anything forgets nothing), and the windows of PerAgent and PerRoute rate
limits (an agent's executions and a route's requests may be on any worker; in memory,
like any rate window).

``GET  .../aiproviderroutes/NAME/usage?gateway=G``  -> {"day", "tokens"}
``POST .../aiproviderroutes/NAME/usage {"gateway": G, "tokens": N}`` -> the new total
``POST .../ratelimitpolicies/NAME/take {"key": K}`` -> {"allowed", "retryAfter"}
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from pathlib import Path

from clrk.api.meta import parse_duration
from clrk.apiserver.errors import APIError, not_found
from clrk.apiserver.handlers import API, Reply, Request
from clrk.apiserver.storage import Key
from clrk.egress.policy.limits import RateWindows

GROUP = "clrk.apoxy.dev"
KEEP_DAYS = 31
MAX_CALL_TOKENS = 2**40  # one report; more is no model's answer
MAX_DAY_TOKENS = 2**53  # a day's counter saturates here instead of overflowing SQLite


def today() -> str:
    return dt.datetime.now(dt.UTC).date().isoformat()


class TokenCounters:
    def __init__(self, path: Path) -> None:
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS tokens (namespace TEXT, route TEXT, gateway TEXT, "
            "day TEXT, used INTEGER NOT NULL, PRIMARY KEY (namespace, route, gateway, day))")
        self._db.execute("DELETE FROM tokens WHERE day < ?",
                         ((dt.datetime.now(dt.UTC).date()
                           - dt.timedelta(days=KEEP_DAYS)).isoformat(),))

    def used(self, namespace: str, route: str, gateway: str, day: str) -> int:
        row = self._db.execute(
            "SELECT used FROM tokens WHERE namespace=? AND route=? AND gateway=? AND day=?",
            (namespace, route, gateway, day)).fetchone()
        return int(row[0]) if row else 0

    def add(self, namespace: str, route: str, gateway: str, day: str, tokens: int) -> int:
        row = self._db.execute(
            "INSERT INTO tokens VALUES (?,?,?,?,?) ON CONFLICT (namespace, route, gateway, "
            "day) DO UPDATE SET used = MIN(used + excluded.used, ?) RETURNING used",
            (namespace, route, gateway, day, tokens, MAX_DAY_TOKENS)).fetchone()
        return int(row[0])

    def close(self) -> None:
        self._db.close()


def install(api: API, counters: TokenCounters) -> None:
    async def usage(req: Request) -> Reply:
        ns, route = req.namespace or "", req.name or ""
        if req.method == "GET":
            name = req.query.get("gateway") or ""
            if not name:
                raise APIError(400, "gateway is required")
            day = today()
            return Reply(body={"day": day, "tokens": counters.used(ns, route, name, day)})
        if req.method != "POST":
            raise APIError(405, "usage accepts GET and POST", "MethodNotAllowed")
        doc = await req.json_object()
        gateway, tokens = doc.get("gateway"), doc.get("tokens")
        if not isinstance(gateway, str) or not gateway:
            raise APIError(400, "gateway must be a gateway name")
        if not isinstance(tokens, int) or isinstance(tokens, bool) \
                or not 0 <= tokens <= MAX_CALL_TOKENS:
            raise APIError(400, f"tokens must be an integer from 0 to {MAX_CALL_TOKENS}, not "
                           f"{str(tokens)[:40]}")
        day = today()
        return Reply(body={"day": day, "tokens": counters.add(ns, route, gateway, day,
                                                              tokens)})

    windows = RateWindows()

    async def take(req: Request) -> Reply:
        """One request against a shared rate window, counted for every worker."""
        if req.method != "POST":
            raise APIError(405, "take accepts POST only", "MethodNotAllowed")
        policy = api.store.get(Key(GROUP, "ratelimitpolicies", req.namespace or "",
                                   req.name or ""))
        if policy is None:
            raise not_found("ratelimitpolicies", req.name or "", GROUP)
        key = (await req.json_object()).get("key")
        if not isinstance(key, str):
            raise APIError(400, "key must be a string")
        spec = policy["spec"]
        wait = windows.take(f"{req.namespace}/{req.name}/{key}", int(spec["requests"]),
                            parse_duration(spec["window"]).total_seconds())
        return Reply(body={"allowed": wait is None, "retryAfter": wait or 0})

    api.subresources[(GROUP, "aiproviderroutes", "usage")] = usage
    api.subresources[(GROUP, "ratelimitpolicies", "take")] = take
