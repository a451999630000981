"""Console sessions and one-time login links.

A browser logs in once, with the bearer token (the API server's authenticator judges it)
or with a one-time link ``clrk console`` asked for with its own credentials; it then
holds only an opaque session id in an HttpOnly, SameSite=Lax, Secure cookie scoped to
``/console``. The token never reaches the page's scripts, and a session ends at logout,
at its expiry or when the API server restarts (sessions are kept in memory on purpose: a
stolen cookie is worth nothing after a restart)."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass

from clrk.apiserver.access import User

COOKIE = "clrk_console"
SESSION_SECONDS = 8 * 3600
LINK_SECONDS = 300  # how long a one-time link stays usable
MAX_SESSIONS = 10_000  # past this the oldest are forgotten (a flood cannot fill memory)


@dataclass(frozen=True)
class Session:
    user: User
    expires: float  # time.monotonic()


class Sessions:
    def __init__(self, session_seconds: float = SESSION_SECONDS,
                 link_seconds: float = LINK_SECONDS) -> None:
        self.session_seconds = session_seconds
        self.link_seconds = link_seconds
        self._sessions: dict[str, Session] = {}
        self._links: dict[str, Session] = {}

    def start(self, user: User) -> str:
        """A new session for ``user``: the cookie's value."""
        self._expire()
        while len(self._sessions) >= MAX_SESSIONS:
            del self._sessions[next(iter(self._sessions))]
        sid = secrets.token_urlsafe(32)
        self._sessions[sid] = Session(user, time.monotonic() + self.session_seconds)
        return sid

    def user(self, sid: str | None) -> User | None:
        """Whose session ``sid`` is, or None (unknown, ended or expired)."""
        if not sid:
            return None
        found = self._sessions.get(sid)
        if found is None or found.expires <= time.monotonic():
            self._sessions.pop(sid, None)
            return None
        return found.user

    def end(self, sid: str | None) -> None:
        if sid:
            self._sessions.pop(sid, None)

    def link(self, user: User) -> str:
        """A one-time login code for ``user``, usable once within ``link_seconds``."""
        self._expire()
        code = secrets.token_urlsafe(32)
        self._links[code] = Session(user, time.monotonic() + self.link_seconds)
        return code

    def redeem(self, code: str) -> User | None:
        """The user a one-time code was made for; the code is spent either way."""
        found = self._links.pop(code, None)
        if found is None or found.expires <= time.monotonic():
            return None
        return found.user

    def _expire(self) -> None:
        now = time.monotonic()
        for table in (self._sessions, self._links):
            for key in [k for k, s in table.items() if s.expires <= now]:
                del table[key]
