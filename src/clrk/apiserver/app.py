"""HTTP routing: Kubernetes paths -> API verbs, with auth, limits and Status errors."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any

from starlette.applications import Starlette
from starlette.requests import ClientDisconnect
from starlette.requests import Request as HTTPRequest
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from clrk import __version__
from clrk.apiserver import discovery, openapi
from clrk.apiserver.access import Access, Credentials, PeerCertificate, User, forbidden_message
from clrk.apiserver.attributes import request_attributes
from clrk.apiserver.decoding import MAX_BODY
from clrk.apiserver.errors import APIError, status_body
from clrk.apiserver.handlers import API, Reply, Request

log = logging.getLogger("clrk.apiserver")


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(json.dumps(body, separators=(",", ":")), status_code=status,
                    media_type="application/json", headers=headers)


def _error(err: APIError) -> Response:
    return _json(err.status(), err.code, err.headers or None)


async def read_body(request: HTTPRequest, limit: int = MAX_BODY) -> bytes:
    """The body, refused with 413 as soon as it passes ``limit`` (never buffered whole)."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise APIError(413, f"the request body is {int(declared)} bytes; the limit is "
                       f"{limit} bytes", "RequestEntityTooLarge")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise APIError(413, f"the request body is larger than the limit of {limit} "
                           "bytes", "RequestEntityTooLarge")
        chunks.append(chunk)
    return b"".join(chunks)


def warning_value(text: str) -> str:
    r"""A warning as an RFC 7234 header value that always encodes, so a field named with a
    newline or in another script cannot cut the response off after the object was
    stored. Double quotes become single; a backslash and anything outside printable ASCII
    are sent as quoted-pair escapes (``\\u00e9`` on the wire, ``\u00e9`` once unquoted)."""
    out = []
    for ch in text.replace('"', "'"):
        if ch == "\\":
            out.append("\\\\")
        elif " " <= ch <= "~":
            out.append(ch)
        else:
            out.append(f"\\\\u{ord(ch):04x}" if ord(ch) <= 0xFFFF else f"\\\\U{ord(ch):08x}")
    return f'299 - "{"".join(out)}"'


def version_info() -> dict[str, str]:
    return {"major": "1", "minor": "32", "gitVersion": f"v1.32.0-clrk.{__version__}",
            "gitCommit": "", "gitTreeState": "clean", "buildDate": "",
            "goVersion": "python", "compiler": "cpython", "platform": "linux/amd64"}


class Router:
    """Parses Kubernetes API paths and dispatches to :class:`API`."""

    def __init__(self, api: API, access: Access) -> None:
        self.api = api
        self.access = access

    def groups(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for s in self.api.served.values():
            if s.info.group:
                out.setdefault(s.info.group, [])
                if s.info.version not in out[s.info.group]:
                    out[s.info.group].append(s.info.version)
        return out

    async def dispatch(self, request: HTTPRequest) -> Response:
        path = request.url.path.strip("/")
        parts = [p for p in path.split("/") if p]
        head = parts[0] if parts else ""
        try:
            if head in self.access.public:  # probes and the version: no credentials
                if head == "version":
                    return _json(version_info())
                return Response("ok", media_type="text/plain")
            user = await self.access.authenticator.authenticate(credentials(request))
            if user is None:
                return _json(status_body(401, "Unauthorized: a valid bearer token is required",
                                         "Unauthorized"), 401)
            await self._authorize(request, user)
            if head == "openapi":
                return self._openapi(request, parts[1:])
            if head == "api" and "" in self.api.groups:
                return await self._route(request, "", parts[1:])
            if head == "apis":
                return await self._route_apis(request, parts[1:])
            raise APIError(404, f"the server could not find the requested resource ({path})")
        except APIError as err:
            return _error(err)
        except ClientDisconnect:  # the client left mid-body: nothing was done
            log.info("client left during %s %s", request.method, request.url.path)
            return _json(status_body(400, "the client disconnected", "BadRequest"), 400)
        except Exception:
            log.exception("internal error serving %s %s", request.method, request.url.path)
            return _json(status_body(500, "internal error; see the server log",
                                     "InternalError"), 500)

    async def _authorize(self, request: HTTPRequest, user: User) -> None:
        attributes = request_attributes(request.method, request.url.path,
                                        dict(request.query_params))
        decision = await self.access.authorizer.authorize(user, attributes)
        if not decision.allowed:
            raise APIError(403, forbidden_message(user, attributes, decision.reason),
                           "Forbidden", name=attributes.name, group=attributes.group,
                           kind=attributes.resource)

    def _openapi(self, request: HTTPRequest, rest: list[str]) -> Response:
        if rest == ["v2"]:
            if openapi.V2_PROTOBUF in request.headers.get("accept", ""):
                return Response(openapi.openapi_v2_protobuf(),
                                media_type="application/octet-stream")
            return _json(openapi.openapi_v2_document())
        if rest == ["v3"]:
            return _json(openapi.root_document(self.api.groups))
        if len(rest) >= 2 and rest[0] == "v3":
            gv = "/".join(rest[1:])
            if gv == "api/v1" and "" in self.api.groups:
                doc = openapi.group_version_document("", "v1")
            elif len(rest) == 4 and rest[1] == "apis" and rest[2] in self.api.groups:
                doc = openapi.group_version_document(rest[2], rest[3])
            else:
                doc = None
            if doc is None:
                raise APIError(404, f"no OpenAPI document for {gv}")
            headers = {"Cache-Control": "public, immutable"} if "hash" in request.query_params \
                else None
            return _json(doc, headers=headers)
        raise APIError(404, "the server could not find the requested resource")

    async def _route_apis(self, request: HTTPRequest, rest: list[str]) -> Response:
        groups = self.groups()
        if not rest:
            return _json(discovery.group_list(groups))
        if rest[0] not in groups:
            raise APIError(404, f"the server could not find the requested resource "
                           f"(group {rest[0]})")
        if len(rest) == 1:
            return _json(discovery.group(rest[0], groups[rest[0]]))
        return await self._route(request, rest[0], rest[1:])

    async def _route(self, request: HTTPRequest, group: str, rest: list[str]) -> Response:
        if not rest:
            return _json(discovery.api_versions())
        version, rest = rest[0], rest[1:]
        served_here = [s for s in self.api.served.values()
                       if s.info.group == group and s.info.version == version]
        if not served_here:
            raise APIError(404, f"the server could not find the requested resource "
                           f"({group or 'core'}/{version})")
        if not rest:
            gv = f"{group}/{version}" if group else version
            return _json(discovery.resource_list(gv, served_here))
        watch = False
        if rest[0] == "watch":
            watch, rest = True, rest[1:]
        namespace: str | None = None
        if rest and rest[0] == "namespaces" and len(rest) >= 3 and rest[2] not in (
                "status", "finalize"):
            namespace, rest = rest[1], rest[2:]
        if not rest or len(rest) > 3:
            raise APIError(404, "the server could not find the requested resource")
        plural, name = rest[0], (rest[1] if len(rest) > 1 else None)
        sub = rest[2] if len(rest) > 2 else ""
        served = self.api.lookup(group, version, plural)
        if served is None:
            raise APIError(404, f"the server could not find the requested resource "
                           f"({plural}{'.' + group if group else ''})")
        if sub == "finalize" and served.info.kind == "Namespace":
            sub = "status"
        if namespace is not None and not served.info.namespaced:
            raise APIError(404, f"{plural} is not namespaced")
        if served.info.namespaced and name is not None and namespace is None:
            raise APIError(404, f"{plural} is namespaced: use /namespaces/NAMESPACE/{plural}")
        body = b""
        if request.method in ("POST", "PUT", "PATCH", "DELETE"):
            limit = self.api.body_limits.get((group, plural, sub), MAX_BODY)
            try:
                body = await read_body(request, limit)
            except APIError as err:
                hook = self.api.body_refused.get((group, plural, sub))
                if hook is not None and namespace is not None and name is not None:
                    hook(namespace, name, dict(request.headers), err)
                raise
        req = Request(
            method=request.method, served=served, namespace=namespace, name=name,
            subresource=sub, query=dict(request.query_params),
            content_type=request.headers.get("content-type", "application/json"),
            accept=request.headers.get("accept", ""),
            user_agent=request.headers.get("user-agent", ""), body=body, watch=watch,
            headers=dict(request.headers),
        )
        reply = await self.api.handle(req)
        return self._respond(reply)

    def _respond(self, reply: Reply) -> Response:
        headers = dict(reply.headers)
        if reply.warnings:
            headers["Warning"] = ", ".join(warning_value(w) for w in reply.warnings)
        if reply.stream is not None:
            return StreamingResponse(reply.stream, status_code=reply.status,
                                     media_type=reply.media_type, headers=headers)
        if reply.raw is not None:
            return Response(reply.raw, status_code=reply.status, media_type=reply.media_type,
                            headers=headers)
        if isinstance(reply.body, Response):
            return reply.body
        return _json(reply.body, reply.status, headers)


def credentials(request: HTTPRequest) -> Credentials:
    tls = request.scope.get("extensions", {}).get("tls", {})
    der = tls.get("client_cert_der")
    return Credentials(request.headers.get("authorization"),
                       PeerCertificate(der) if der else None,
                       tuple((k.decode("latin-1").lower(), v.decode("latin-1"))
                             for k, v in request.scope["headers"]))


def build_app(api: API, access: Access, mounts: Sequence[BaseRoute] = ()) -> Starlette:
    """The API server's ASGI app; ``mounts`` (the web console) are matched first."""
    router = Router(api, access)
    methods = ["GET", "POST", "PUT", "PATCH", "DELETE"]
    return Starlette(routes=[*mounts, Route("/{path:path}", router.dispatch,
                                           methods=methods)])


__all__ = ["JSONResponse", "build_app"]
