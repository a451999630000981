"""Request attributes as Kubernetes authorization names them, and the front-proxy
authenticator's reading of certificates and headers."""

from __future__ import annotations

import pytest
from cryptography import x509

from clrk import pki
from clrk.apiserver.access import (
    AUTHENTICATED,
    Credentials,
    PeerCertificate,
    StaticToken,
    User,
    forbidden_message,
)
from clrk.apiserver.attributes import Attributes, request_attributes
from clrk.apiserver.errors import APIError
from clrk.controlplane.delegation import AuthenticationConfig, DelegatedAuthenticator
from tests.kube_cluster import free_port

API = "/apis/clrk.apoxy.dev/v1alpha1"


@pytest.mark.parametrize(("method", "path", "query", "expected"), [
    ("GET", f"{API}/namespaces/a/taskagents/x", {},
     ("get", "taskagents", "", "a", "x")),
    ("GET", f"{API}/namespaces/a/taskagents", {}, ("list", "taskagents", "", "a", "")),
    ("GET", f"{API}/taskagents", {"watch": "true"}, ("watch", "taskagents", "", "", "")),
    ("GET", f"{API}/watch/namespaces/a/taskagents", {}, ("watch", "taskagents", "", "a", "")),
    ("GET", f"{API}/namespaces/a/taskagents",
     {"watch": "1", "fieldSelector": "metadata.name=x"}, ("watch", "taskagents", "", "a", "x")),
    ("POST", f"{API}/namespaces/a/taskagents", {}, ("create", "taskagents", "", "a", "")),
    ("POST", f"{API}/namespaces/a/taskagents/x/invoke", {},
     ("create", "taskagents", "invoke", "a", "x")),
    ("GET", f"{API}/namespaces/a/taskagents/x/logs", {"follow": "true"},
     ("get", "taskagents", "logs", "a", "x")),
    ("PUT", f"{API}/namespaces/a/taskagents/x/status", {},
     ("update", "taskagents", "status", "a", "x")),
    ("PATCH", f"{API}/namespaces/a/taskagents/x", {}, ("patch", "taskagents", "", "a", "x")),
    ("DELETE", f"{API}/namespaces/a/taskagents/x", {}, ("delete", "taskagents", "", "a", "x")),
    ("DELETE", f"{API}/namespaces/a/taskagents", {},
     ("deletecollection", "taskagents", "", "a", "")),
    ("GET", "/api/v1/namespaces/a", {}, ("get", "namespaces", "", "a", "a")),
    ("GET", f"{API}/workerpools", {}, ("list", "workerpools", "", "", "")),
])
def test_resource_requests(method: str, path: str, query: dict[str, str],
                           expected: tuple[str, str, str, str, str]) -> None:
    a = request_attributes(method, path, query)
    assert a.resource_request
    assert (a.verb, a.resource, a.subresource, a.namespace, a.name) == expected


@pytest.mark.parametrize("path", ["/apis", "/apis/clrk.apoxy.dev", API, "/api",
                                  "/api/v1", "/openapi/v3", "/version"])
def test_discovery_and_other_paths_are_non_resource(path: str) -> None:
    a = request_attributes("GET", path, {})
    assert not a.resource_request and a.verb == "get" and a.path == path


def test_forbidden_reads_like_kube_apiserver() -> None:
    a = request_attributes("POST", f"{API}/namespaces/rbac/taskagents/x/invoke", {})
    assert forbidden_message(User("alice"), a) == (
        'taskagents.clrk.apoxy.dev "x" is forbidden: User "alice" cannot create resource '
        '"taskagents/invoke" in API group "clrk.apoxy.dev" in the namespace "rbac"')
    assert forbidden_message(User("bob"), Attributes("get", "/openapi/v2")) == (
        'forbidden: User "bob" cannot get path "/openapi/v2"')


async def test_static_token() -> None:
    auth = StaticToken("s3cret")
    user = await auth.authenticate(Credentials("Bearer s3cret"))
    assert user is not None and "system:masters" in user.groups
    assert await auth.authenticate(Credentials("Bearer wrong")) is None
    assert await auth.authenticate(Credentials("Basic s3cret")) is None
    assert await auth.authenticate(Credentials()) is None


def _config(front: pki.KeyPair, client_ca: pki.KeyPair) -> AuthenticationConfig:
    return AuthenticationConfig(
        requestheader_ca=(front.cert,), allowed_names=("front-proxy-client",),
        username_headers=("X-Remote-User",), group_headers=("X-Remote-Group",),
        extra_prefixes=("X-Remote-Extra-",), client_ca=(client_ca.cert,))


def _der(pair: pki.KeyPair) -> PeerCertificate:
    from cryptography.hazmat.primitives.serialization import Encoding

    return PeerCertificate(x509.load_pem_x509_certificate(pair.cert_pem).public_bytes(
        Encoding.DER))


async def test_front_proxy_certificate_makes_the_headers_the_user() -> None:
    front, kube_ca = pki.generate_ca("front"), pki.generate_ca("kube")
    auth = DelegatedAuthenticator(_config(front, kube_ca), client=None)  # type: ignore[arg-type]
    proxy = _der(pki.issue_leaf(front, ["front-proxy-client"], server=False))
    headers = (("x-remote-user", "alice"), ("x-remote-group", "devs"),
               ("x-remote-group", "ops"), ("x-remote-extra-scopes", "a"),
               ("x-remote-extra-scopes", "b"))
    user = await auth.authenticate(Credentials(None, proxy, headers))
    assert user == User("alice", ("devs", "ops", AUTHENTICATED),
                        extra=(("scopes", ("a", "b")),))
    # Without the user header the certificate proves nothing about a user.
    assert await auth.authenticate(Credentials(None, proxy, ())) is None
    # A certificate of the front-proxy CA but not an allowed name: refused.
    other = _der(pki.issue_leaf(front, ["someone-else"], server=False))
    assert await auth.authenticate(Credentials(None, other, headers)) is None
    # kube's client CA: the certificate's CN is the user; headers are ignored.
    client = _der(pki.issue_leaf(kube_ca, ["carol"], server=False))
    user = await auth.authenticate(Credentials(None, client, headers))
    assert user is not None and user.name == "carol" and AUTHENTICATED in user.groups


async def test_an_unreachable_kube_apiserver_is_a_503_that_says_so() -> None:
    """A token review or an access review that cannot reach kube-apiserver is a 503
    naming what could not be done, at the API and at the console's login (not a crash)."""
    from lightkube import AsyncClient, KubeConfig
    from starlette.testclient import TestClient

    from clrk.apiserver.access import Access
    from clrk.console.app import REQUIRED, Console
    from clrk.controlplane.delegation import DelegatedAuthorizer

    dead = f"http://127.0.0.1:{free_port()}"  # a loopback port nothing listens on
    client = AsyncClient(KubeConfig.from_dict({
        "clusters": [{"name": "kube", "cluster": {"server": dead}}],
        "users": [{"name": "clrk", "user": {"token": "clrk-token"}}],
        "contexts": [{"name": "kube", "context": {"cluster": "kube", "user": "clrk"}}],
        "current-context": "kube"}), trust_env=False)
    front, kube_ca = pki.generate_ca("front"), pki.generate_ca("kube")
    authenticator = DelegatedAuthenticator(_config(front, kube_ca), client=client)
    authorizer = DelegatedAuthorizer(client)
    try:
        with pytest.raises(APIError) as err:
            await authenticator.authenticate(Credentials("Bearer a-token", None, ()))
        assert err.value.code == 503
        assert "cannot review the bearer token with kube-apiserver: ConnectError" \
            in err.value.message
        with pytest.raises(APIError) as err:
            await authorizer.authorize(User("alice", (AUTHENTICATED,)), REQUIRED)
        assert err.value.code == 503
        assert "cannot ask kube-apiserver for an authorization decision" in err.value.message
        # The console's login form says it on the page. (Its sources are never read
        # before a login succeeds.)
        console = Console(Access(authenticator, authorizer), None)  # type: ignore[arg-type]
        with TestClient(console.app, base_url="https://testserver") as browser:
            page = browser.post("/login", data={"token": "a-token"})
        assert page.status_code == 503
        assert "cannot review the bearer token with kube-apiserver" in page.text
    finally:
        await client.close()
