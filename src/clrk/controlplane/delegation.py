"""Authentication and authorization delegated to kube-apiserver, as every aggregated API
server does it.

kube-aggregator proxies a user's request with its front-proxy client certificate and the
user in ``X-Remote-User`` / ``X-Remote-Group`` / ``X-Remote-Extra-*``; the CA and the
header names are published in ``kube-system/extension-apiserver-authentication``. A
client that talks to clrk directly (a ServiceAccount's token) is asked about with a
``TokenReview``; each request is then authorized with a ``SubjectAccessReview``, so
Kubernetes RBAC decides who may read, write, invoke or read logs. Answers are cached
briefly, with kube-apiserver's own defaults for delegated servers (10 s each way).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Generic, TypeVar
from urllib.parse import unquote

import httpx
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.x509.oid import NameOID
from lightkube import ApiError, AsyncClient
from lightkube.models.authentication_v1 import TokenReviewSpec
from lightkube.models.authorization_v1 import (
    NonResourceAttributes,
    ResourceAttributes,
    SubjectAccessReviewSpec,
)
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.authentication_v1 import TokenReview
from lightkube.resources.authorization_v1 import SubjectAccessReview
from lightkube.resources.core_v1 import ConfigMap

from clrk.apiserver.access import AUTHENTICATED, Credentials, Decision, User
from clrk.apiserver.attributes import Attributes
from clrk.apiserver.errors import APIError

log = logging.getLogger("clrk.delegation")

AUTHENTICATION_CONFIGMAP = ("kube-system", "extension-apiserver-authentication")
ALWAYS_ALLOW_PATHS = frozenset({"/healthz", "/readyz", "/livez"})
ALWAYS_ALLOW_GROUPS = frozenset({"system:masters"})

K = TypeVar("K")
V = TypeVar("V")


class TTLCache(Generic[K, V]):
    """A bounded map whose entries expire; the oldest go first when it is full."""

    def __init__(self, max_entries: int = 10_000) -> None:
        self.max_entries = max_entries
        self._items: OrderedDict[K, tuple[float, V]] = OrderedDict()

    def get(self, key: K) -> tuple[bool, V | None]:
        item = self._items.get(key)
        if item is None or item[0] < time.monotonic():
            self._items.pop(key, None)
            return False, None
        return True, item[1]

    def put(self, key: K, value: V, ttl: float) -> None:
        self._items[key] = (time.monotonic() + ttl, value)
        self._items.move_to_end(key)
        while len(self._items) > self.max_entries:
            self._items.popitem(last=False)


@dataclass(frozen=True)
class AuthenticationConfig:
    """kube-system/extension-apiserver-authentication, parsed."""

    requestheader_ca: tuple[x509.Certificate, ...]
    allowed_names: tuple[str, ...]
    username_headers: tuple[str, ...]
    group_headers: tuple[str, ...]
    extra_prefixes: tuple[str, ...]
    client_ca: tuple[x509.Certificate, ...] = ()

    def ca_bundle_pem(self) -> bytes:
        """Every CA a client certificate may come from (for the TLS handshake)."""
        from cryptography.hazmat.primitives.serialization import Encoding

        return b"".join(c.public_bytes(Encoding.PEM)
                        for c in self.requestheader_ca + self.client_ca)


def _certificates(pem: str | None) -> tuple[x509.Certificate, ...]:
    return tuple(x509.load_pem_x509_certificates(pem.encode())) if pem else ()


def _list(value: str | None) -> tuple[str, ...]:
    return tuple(json.loads(value)) if value else ()


async def read_authentication_config(client: AsyncClient) -> AuthenticationConfig:
    namespace, name = AUTHENTICATION_CONFIGMAP
    try:
        cm = await client.get(ConfigMap, name, namespace=namespace)
    except ApiError as err:
        raise RuntimeError(
            f"cannot read {namespace}/{name} ({err.status.code}: {err.status.message}); "
            "the controller manager's ServiceAccount needs the "
            "extension-apiserver-authentication-reader Role in kube-system") from err
    data = cm.data or {}
    return AuthenticationConfig(
        requestheader_ca=_certificates(data.get("requestheader-client-ca-file")),
        allowed_names=_list(data.get("requestheader-allowed-names")),
        username_headers=_list(data.get("requestheader-username-headers")),
        group_headers=_list(data.get("requestheader-group-headers")),
        extra_prefixes=_list(data.get("requestheader-extra-headers-prefix")),
        client_ca=_certificates(data.get("client-ca-file")),
    )


def _issued_by(cert: x509.Certificate, cas: tuple[x509.Certificate, ...]) -> bool:
    for ca in cas:
        try:
            cert.verify_directly_issued_by(ca)
            return True
        except (ValueError, TypeError, InvalidSignature):
            continue
    return False


def _names(cert: x509.Certificate, oid: x509.ObjectIdentifier) -> list[str]:
    return [str(a.value) for a in cert.subject.get_attributes_for_oid(oid)]


@dataclass
class DelegatedAuthenticator:
    config: AuthenticationConfig
    client: AsyncClient
    ttl: float = 10.0
    _tokens: TTLCache[str, User | None] = field(default_factory=TTLCache)

    async def authenticate(self, credentials: Credentials) -> User | None:
        user = await self._authenticate(credentials)
        if user is None or AUTHENTICATED in user.groups or user.name == "system:anonymous":
            return user
        # As kube-apiserver's authenticated-group adder does: RBAC's discovery rules (the
        # aggregator's own fetches of /apis and /openapi included) are granted to this group.
        return User(user.name, (*user.groups, AUTHENTICATED), user.uid, user.extra)

    async def _authenticate(self, credentials: Credentials) -> User | None:
        if credentials.peer is not None:
            cert = x509.load_der_x509_certificate(credentials.peer.der)
            if _issued_by(cert, self.config.requestheader_ca):
                return self._from_front_proxy(cert, credentials)
            if _issued_by(cert, self.config.client_ca):
                cns = _names(cert, NameOID.COMMON_NAME)
                if cns:
                    return User(cns[0], tuple(_names(cert, NameOID.ORGANIZATION_NAME)))
        token = credentials.bearer_token()
        if token is None:
            return None
        return await self._review(token)

    def _from_front_proxy(self, cert: x509.Certificate,
                          credentials: Credentials) -> User | None:
        cns = _names(cert, NameOID.COMMON_NAME)
        if self.config.allowed_names and not set(cns) & set(self.config.allowed_names):
            log.warning("refused a front-proxy certificate for %s: not in the allowed names",
                        cns)
            return None
        name = next((v for h in self.config.username_headers
                     for v in credentials.header_values(h) if v), "")
        if not name:
            return None
        groups = tuple(v for h in self.config.group_headers
                       for v in credentials.header_values(h) if v)
        extra: dict[str, list[str]] = {}
        for prefix in self.config.extra_prefixes:
            p = prefix.lower()
            for key, value in credentials.headers:
                if key.startswith(p) and len(key) > len(p):
                    extra.setdefault(unquote(key[len(p):]), []).append(value)
        return User(name, groups, extra=tuple((k, tuple(v)) for k, v in sorted(extra.items())))

    async def _review(self, token: str) -> User | None:
        key = hashlib.sha256(token.encode()).hexdigest()
        hit, cached = self._tokens.get(key)
        if hit:
            return cached
        try:
            review = await self.client.create(TokenReview(
                metadata=ObjectMeta(), spec=TokenReviewSpec(token=token)))
        except (ApiError, httpx.HTTPError) as err:
            raise _unavailable("cannot review the bearer token with kube-apiserver", err) from err
        status = review.status
        user: User | None = None
        if status is not None and status.authenticated and status.user is not None:
            info = status.user
            user = User(info.username or "", tuple(info.groups or ()), info.uid or "",
                        tuple((k, tuple(v)) for k, v in sorted((info.extra or {}).items())))
        self._tokens.put(key, user, self.ttl)
        return user


def _unavailable(what: str, err: ApiError | httpx.HTTPError) -> APIError:
    """503: kube-apiserver refused the review, or could not be reached for it."""
    why = err.status.message if isinstance(err, ApiError) else \
        f"{type(err).__name__}: {err}".rstrip(": ")
    return APIError(503, f"{what}: {why}", "ServiceUnavailable")


@dataclass
class DelegatedAuthorizer:
    client: AsyncClient
    allow_ttl: float = 10.0
    deny_ttl: float = 10.0
    _decisions: TTLCache[tuple[User, Attributes], Decision] = field(default_factory=TTLCache)

    async def authorize(self, user: User, attributes: Attributes) -> Decision:
        if not attributes.resource_request and attributes.path in ALWAYS_ALLOW_PATHS:
            return Decision(True)
        if ALWAYS_ALLOW_GROUPS & set(user.groups):
            return Decision(True)
        key = (user, attributes)
        hit, cached = self._decisions.get(key)
        if hit and cached is not None:
            return cached
        try:
            review = await self.client.create(SubjectAccessReview(
                metadata=ObjectMeta(), spec=self._spec(user, attributes)))
        except (ApiError, httpx.HTTPError) as err:
            raise _unavailable("cannot ask kube-apiserver for an authorization decision",
                               err) from err
        status = review.status
        allowed = bool(status is not None and status.allowed and not status.denied)
        decision = Decision(allowed, (status.reason or "") if status is not None else "")
        self._decisions.put(key, decision, self.allow_ttl if allowed else self.deny_ttl)
        return decision

    @staticmethod
    def _spec(user: User, a: Attributes) -> SubjectAccessReviewSpec:
        spec = SubjectAccessReviewSpec(
            user=user.name, groups=list(user.groups), uid=user.uid or None,
            extra={k: list(v) for k, v in user.extra} or None)
        if a.resource_request:
            spec.resourceAttributes = ResourceAttributes(
                verb=a.verb, group=a.group, version=a.version, resource=a.resource,
                subresource=a.subresource or None, namespace=a.namespace or None,
                name=a.name or None)
        else:
            spec.nonResourceAttributes = NonResourceAttributes(path=a.path, verb=a.verb)
        return spec
