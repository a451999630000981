"""The console as an ASGI app mounted at ``/console`` on the API server: the login and
logout pages, the one-time links ``clrk console`` asks for, the static page and its
assets, and the console API, every one of them but the login page answering 401 without
a live session cookie.

Logging in proves the same credentials the Kubernetes API takes (the API server's own
authenticator, so on a cluster kube-apiserver's TokenReview) and needs the right to list
Invocations in every namespace, which is what the console shows, at login and on every
request after it. Forms are refused when their Origin is another site's; every answer
forbids framing and caching, and the pages' Content-Security-Policy allows nothing that
is not served from here.
"""

from __future__ import annotations

import html
from importlib import resources

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from clrk.apiserver.access import Access, Authorizer, Credentials, User
from clrk.apiserver.attributes import Attributes
from clrk.apiserver.errors import APIError
from clrk.console.api import ConsoleAPI, Sources
from clrk.console.sessions import COOKIE, SESSION_SECONDS, Sessions

PREFIX = "/console"
GROUP = "clrk.apoxy.dev"
# What a console user must be allowed: the console shows every namespace's invocations.
REQUIRED = Attributes("list", "/apis/clrk.apoxy.dev/v1alpha1/invocations", True, GROUP,
                      "v1alpha1", "invocations")
STATIC = {"console.js": "text/javascript", "console.css": "text/css",
          "index.html": "text/html"}
PAGE_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
            "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
LOGIN_CSP = ("default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
             "frame-ancestors 'none'; base-uri 'none'")
COMMON_HEADERS = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "same-origin",
                  "Cache-Control": "no-store", "X-Frame-Options": "DENY"}

LOGIN_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>clrk console: log in</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body {{ font: 15px system-ui, sans-serif; background: #f4f5f7; color: #1d2330; }}
main {{ max-width: 26rem; margin: 12vh auto; background: #fff; padding: 2rem;
       border-radius: 8px; box-shadow: 0 1px 3px #0002; }}
h1 {{ font-size: 1.3rem; margin-top: 0; }} label {{ display: block; margin: 1rem 0 .3rem; }}
input {{ width: 100%; box-sizing: border-box; padding: .5rem; font: inherit; }}
button {{ margin-top: 1rem; padding: .5rem 1.2rem; font: inherit; background: #2d5bd7;
         color: #fff; border: 0; border-radius: 4px; cursor: pointer; }}
.error {{ color: #b3261e; }} p.hint {{ color: #5b6270; font-size: .9rem; }}
</style></head>
<body><main><h1>clrk console</h1>{error}
<form method="post" action="{prefix}/login">
<label for="token">Bearer token</label>
<input id="token" name="token" type="password" autocomplete="off" required autofocus>
<button type="submit">Log in</button></form>
<p class="hint">The token of your kubeconfig's clrk context, or run <code>clrk console</code>
for a one-time link.</p></main></body></html>
"""


def _headers(csp: str | None = None) -> dict[str, str]:
    return {**COMMON_HEADERS, **({"Content-Security-Policy": csp} if csp else {})}


def login_page(status: int = 200, error: str = "") -> HTMLResponse:
    shown = f'<p class="error" role="alert">{html.escape(error)}</p>' if error else ""
    return HTMLResponse(LOGIN_PAGE.format(error=shown, prefix=PREFIX), status,
                        headers=_headers(LOGIN_CSP))


def _answers_json(path: str) -> bool:
    """Whether an error at ``path`` is JSON (the API and the assets), not the login page."""
    return path.startswith((f"{PREFIX}/api", f"{PREFIX}/static"))


def _unauthorized(scope: Scope, why: str = "") -> Response:
    """401: the login page for a page, a JSON error for the API and assets."""
    if _answers_json(scope.get("path", "")):
        return JSONResponse({"error": f"Unauthorized: {why or 'log in to the console first'}"},
                            401, headers=_headers())
    return login_page(401, why)


class RequireSession:
    """ASGI middleware: the wrapped app runs only for a request with a live session whose
    user may still list every namespace's invocations (its user in
    ``scope["state"]["console_user"]``); anything else gets 401. The right is asked again
    on each request (the authorizer caches its answers for seconds), so a RoleBinding
    taken away ends the sessions it let in, not only the next login."""

    def __init__(self, app: ASGIApp, sessions: Sessions, authorizer: Authorizer) -> None:
        self.app = app
        self.sessions = sessions
        self.authorizer = authorizer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        sid = Request(scope).cookies.get(COOKIE)
        user = self.sessions.user(sid)
        if user is None:
            await _unauthorized(scope)(scope, receive, send)
            return
        if not (await self.authorizer.authorize(user, REQUIRED)).allowed:
            self.sessions.end(sid)
            await _unauthorized(scope, _may_not(user))(scope, receive, send)
            return
        scope.setdefault("state", {})["console_user"] = user
        await self.app(scope, receive, send)


def _may_not(user: User) -> str:
    return f'User "{user.name}" may not list invocations in every namespace, which the ' \
        "console shows."


def _same_origin(request: Request) -> bool:
    """A form may be posted from the console's own pages only (an absent Origin is a
    non-browser client, which holds the credentials itself)."""
    origin = request.headers.get("origin")
    if origin is None:
        return True
    host = request.headers.get("host", "")
    return origin in (f"https://{host}", f"http://{host}")


class Console:
    def __init__(self, access: Access, sources: Sources,
                 sessions: Sessions | None = None) -> None:
        self.access = access
        self.sessions = sessions or Sessions()
        self.api = ConsoleAPI(sources)
        guarded = Starlette(routes=[
            Route("/", self.index, methods=["GET"]),
            Route("/static/{file}", self.static, methods=["GET"]),
            Route("/session", self.session, methods=["GET"]),
            Mount("/api", routes=self.api.routes()),
        ])
        guarded.add_exception_handler(404, self._not_found)
        guarded.add_exception_handler(405, self._not_allowed)
        self.app = Starlette(routes=[
            Route("/login", self.login, methods=["GET", "POST"]),
            Route("/logout", self.logout, methods=["POST"]),
            Route("/login-links", self.login_link, methods=["POST"]),
            Mount("", app=RequireSession(guarded, self.sessions, access.authorizer)),
        ])
        self.app.add_exception_handler(APIError, self._api_error)

    def mount(self) -> Mount:
        return Mount(PREFIX, app=self.app)

    async def _not_found(self, request: Request, exc: Exception) -> Response:
        return JSONResponse({"error": f"no such console route {request.url.path}"}, 404,
                            headers=_headers())

    async def _api_error(self, request: Request, exc: Exception) -> Response:
        """What the authenticator or authorizer could not decide (on a cluster,
        kube-apiserver unreachable: 503), said on the login page or as the API's error."""
        assert isinstance(exc, APIError)
        path = request.url.path
        if _answers_json(path) or (request.method == "POST" and path != f"{PREFIX}/login"):
            return JSONResponse({"error": exc.message}, exc.code, headers=_headers())
        return login_page(exc.code, exc.message)

    async def _not_allowed(self, request: Request, exc: Exception) -> Response:
        return JSONResponse({"error": f"{request.method} is not allowed here"}, 405,
                            headers=_headers())

    async def _user(self, credentials: Credentials) -> tuple[User | None, str]:
        user = await self.access.authenticator.authenticate(credentials)
        if user is None:
            return None, "That token is not valid."
        decision = await self.access.authorizer.authorize(user, REQUIRED)
        if not decision.allowed:
            return None, _may_not(user)
        return user, ""

    def _logged_in(self, user: User) -> Response:
        response = RedirectResponse(f"{PREFIX}/", 303, headers=_headers())
        response.set_cookie(COOKIE, self.sessions.start(user), max_age=SESSION_SECONDS,
                            path=PREFIX, secure=True, httponly=True, samesite="lax")
        return response

    async def login(self, request: Request) -> Response:
        if request.method == "GET":
            code = request.query_params.get("code")
            if code is None:
                return login_page()
            user = self.sessions.redeem(code)
            if user is None:
                return login_page(401, "That link was used already or has expired: run "
                                  "clrk console again.")
            return self._logged_in(user)
        if not _same_origin(request):
            return login_page(403, "The login form was posted from another site.")
        form = await request.form()
        token = str(form.get("token") or "").strip()
        user, why = await self._user(Credentials(authorization=f"Bearer {token}"))
        if user is None:
            return login_page(401, why)
        return self._logged_in(user)

    async def logout(self, request: Request) -> Response:
        sid = request.cookies.get(COOKIE)
        if self.sessions.user(sid) is None:
            return _unauthorized(request.scope)
        if not _same_origin(request):
            return JSONResponse({"error": "cross-site logout refused"}, 403,
                                headers=_headers())
        self.sessions.end(sid)
        response = RedirectResponse(f"{PREFIX}/login", 303, headers=_headers())
        response.delete_cookie(COOKIE, path=PREFIX, secure=True, httponly=True,
                               samesite="lax")
        return response

    async def login_link(self, request: Request) -> Response:
        """A one-time login link for whoever holds the API server's credentials (what
        ``clrk console`` prints): ``{"path": "/console/login?code=..."}``."""
        headers = tuple((k.decode("latin-1").lower(), v.decode("latin-1"))
                        for k, v in request.scope["headers"])
        user, why = await self._user(Credentials(
            authorization=request.headers.get("authorization"), headers=headers))
        if user is None:
            return JSONResponse({"error": f"Unauthorized: {why}"}, 401, headers=_headers())
        code = self.sessions.link(user)
        return JSONResponse({"path": f"{PREFIX}/login?code={code}",
                             "expiresInSeconds": int(self.sessions.link_seconds)},
                            headers=_headers())

    async def session(self, request: Request) -> Response:
        user: User = request.scope["state"]["console_user"]
        return JSONResponse({"user": user.name, "groups": list(user.groups)},
                            headers=_headers())

    async def index(self, request: Request) -> Response:
        return self._asset("index.html")

    async def static(self, request: Request) -> Response:
        name = request.path_params["file"]
        if name not in STATIC or name == "index.html":
            return JSONResponse({"error": f"no asset {name}"}, 404, headers=_headers())
        return self._asset(name)

    def _asset(self, name: str) -> Response:
        body = resources.files("clrk.console").joinpath("static", name).read_bytes()
        return Response(body, media_type=STATIC[name], headers=_headers(PAGE_CSP))

