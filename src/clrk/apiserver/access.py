"""Who is asking and may they: the API server's authentication and authorization seams.

The REST layer only knows these protocols. ``clrk dev`` plugs in its one bearer token
and lets that user do everything; a cluster install plugs in the delegated pair of
:mod:`clrk.controlplane.delegation` (kube-apiserver's front-proxy certificate,
TokenReview and SubjectAccessReview), so Kubernetes RBAC decides, as for any aggregated
API server.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field
from typing import Protocol

from clrk.apiserver.attributes import Attributes

# Groups every authenticated user carries, as kube-apiserver adds them.
AUTHENTICATED = "system:authenticated"
DEV_USER = "clrk-admin"


@dataclass(frozen=True)
class User:
    name: str
    groups: tuple[str, ...] = ()
    uid: str = ""
    extra: tuple[tuple[str, tuple[str, ...]], ...] = ()


@dataclass(frozen=True)
class PeerCertificate:
    """The client certificate the TLS handshake verified (DER), if the client sent one."""

    der: bytes


@dataclass(frozen=True)
class Credentials:
    """What a request carries that can say who sent it."""

    authorization: str | None = None
    peer: PeerCertificate | None = None
    headers: tuple[tuple[str, str], ...] = ()  # lower-case names, repeated names kept

    def header_values(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k == name.lower()]

    def bearer_token(self) -> str | None:
        scheme, _, token = (self.authorization or "").partition(" ")
        token = token.strip()
        return token if scheme.lower() == "bearer" and token else None


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str = ""


class Authenticator(Protocol):
    async def authenticate(self, credentials: Credentials) -> User | None:
        """The user, or None when the credentials prove nothing (401)."""
        ...


class Authorizer(Protocol):
    async def authorize(self, user: User, attributes: Attributes) -> Decision: ...


@dataclass
class StaticToken:
    """``clrk dev``: one bearer token, generated at first start, for one all-powerful user."""

    token: str
    user: User = field(default_factory=lambda: User(DEV_USER, ("system:masters",
                                                               AUTHENTICATED)))

    async def authenticate(self, credentials: Credentials) -> User | None:
        token = credentials.bearer_token()
        if token is not None and hmac.compare_digest(token.encode(), self.token.encode()):
            return self.user
        return None


class AllowAll:
    """``clrk dev`` has one user, who owns the machine: nothing to decide."""

    async def authorize(self, user: User, attributes: Attributes) -> Decision:
        return Decision(True)


@dataclass
class Access:
    authenticator: Authenticator
    authorizer: Authorizer
    # Paths anyone may read without credentials (probes and the version).
    public: frozenset[str] = frozenset({"healthz", "livez", "readyz", "version"})


def dev_access(token: str) -> Access:
    return Access(StaticToken(token), AllowAll())


def forbidden_message(user: User, a: Attributes, reason: str = "") -> str:
    """kube-apiserver's wording, so users and tools recognise it."""
    why = f": {reason}" if reason else ""
    if not a.resource_request:
        return (f'forbidden: User "{user.name}" cannot {a.verb} path "{a.path}"{why}')
    resource = f"{a.resource}/{a.subresource}" if a.subresource else a.resource
    qualified = f"{a.resource}.{a.group}" if a.group else a.resource
    subject = f'{qualified} "{a.name}"' if a.name else qualified
    where = f' in the namespace "{a.namespace}"' if a.namespace else " at the cluster scope"
    return (f'{subject} is forbidden: User "{user.name}" cannot {a.verb} resource '
            f'"{resource}" in API group "{a.group}"{where}{why}')
