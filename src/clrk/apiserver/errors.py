"""metav1.Status errors: every failure the API returns is one of these."""

from __future__ import annotations

from typing import Any

_REASONS = {
    400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound",
    405: "MethodNotAllowed", 406: "NotAcceptable", 409: "Conflict", 410: "Expired",
    413: "RequestEntityTooLarge", 415: "UnsupportedMediaType", 422: "Invalid",
    429: "TooManyRequests", 500: "InternalError", 503: "ServiceUnavailable",
}


class APIError(Exception):
    """Raised anywhere in a handler; rendered as a Status with ``code``."""

    def __init__(self, code: int, message: str, reason: str | None = None, *,
                 name: str = "", group: str = "", kind: str = "",
                 causes: list[dict[str, str]] | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.headers = dict(headers or {})
        if code == 429:
            self.headers.setdefault("Retry-After", "1")
        self.message = message
        self.reason = reason or _REASONS.get(code, "Unknown")
        self.details: dict[str, Any] = {}
        if name:
            self.details["name"] = name
        if group:
            self.details["group"] = group
        if kind:
            self.details["kind"] = kind
        if causes:
            self.details["causes"] = causes

    def status(self) -> dict[str, Any]:
        return status_body(self.code, self.message, self.reason, self.details)


def status_body(code: int, message: str, reason: str,
                details: dict[str, Any] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "code": code,
    }
    if details:
        body["details"] = details
    return body


def not_found(resource: str, name: str, group: str = "") -> APIError:
    full = f"{resource}.{group}" if group else resource
    return APIError(404, f'{full} "{name}" not found', name=name, group=group, kind=resource)


def already_exists(resource: str, name: str, group: str = "") -> APIError:
    full = f"{resource}.{group}" if group else resource
    return APIError(409, f'{full} "{name}" already exists', "AlreadyExists",
                    name=name, group=group, kind=resource)


def conflict(resource: str, name: str, group: str = "") -> APIError:
    full = f"{resource}.{group}" if group else resource
    return APIError(409, f'Operation cannot be fulfilled on {full} "{name}": the object has '
                    "been modified; please apply your changes to the latest version and try "
                    "again", "Conflict", name=name, group=group, kind=resource)


def invalid(kind: str, group: str, name: str, causes: list[dict[str, str]]) -> APIError:
    full = f"{kind}.{group}" if group else kind
    text = ", ".join(f"{c['field']}: {c['message']}" if c.get("field") else c["message"]
                     for c in causes)
    return APIError(422, f'{full} "{name}" is invalid: {text}', "Invalid",
                    name=name, group=group, kind=kind, causes=causes)
