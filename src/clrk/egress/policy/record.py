"""What one intercepted HTTP request leaves behind: a span and a summary log line,
with OpenTelemetry's HTTP and GenAI names. Credentials are redacted here, before the
record leaves the worker: known credential headers, the LoggingPolicy's list, every
header a policy injected, and any injected value wherever else it appears."""

from __future__ import annotations

import base64
import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from clrk.telemetry.connections import call_summary

REDACTED = "[redacted]"
ALWAYS_REDACT = frozenset({
    "authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key",
    "x-goog-api-key", "api-key", "openai-api-key", "anthropic-api-key", "x-auth-token",
    "x-amz-security-token"})


@dataclass
class Capture:
    limit: int = 0
    content_types: tuple[str, ...] = ()
    data: bytearray = field(default_factory=bytearray)
    truncated: bool = False
    seen: int = 0

    def wants(self, content_type: str) -> bool:
        return self.limit > 0 and (not self.content_types or any(
            content_type.startswith(t) for t in self.content_types))

    def add(self, chunk: bytes) -> None:
        self.seen += len(chunk)
        room = self.limit - len(self.data)
        if room > 0:
            self.data += chunk[:room]
        if len(chunk) > max(room, 0):
            self.truncated = True


@dataclass
class HttpRecord:
    start: dt.datetime
    method: str
    host: str
    port: int
    path: str  # as the agent sent it (before any injected query parameter)
    gateway: str
    attributes: dict[str, str] = field(default_factory=dict)
    request_headers: dict[str, str] = field(default_factory=dict)
    response_headers: dict[str, str] = field(default_factory=dict)
    redact: set[str] = field(default_factory=lambda: set(ALWAYS_REDACT))
    secrets: list[str] = field(default_factory=list)
    status: int = 0
    denied: str = ""
    bytes_sent: int = 0
    bytes_received: int = 0
    request_body: Capture | None = None
    response_body: Capture | None = None

    def _scrub(self, text: str) -> str:
        for value in self.secrets:
            if value and value in text:
                text = text.replace(value, REDACTED)
        return text

    def _headers(self, prefix: str, headers: dict[str, str]) -> dict[str, str]:
        return {f"{prefix}{k}": REDACTED if k in self.redact else self._scrub(v)
                for k, v in headers.items() if not k.startswith(":")}

    def _body(self, capture: Capture | None) -> str | None:
        if capture is None or not capture.data:
            return None
        raw = bytes(capture.data)
        for value in self.secrets:
            if value:
                raw = raw.replace(value.encode(), REDACTED.encode())
        return base64.b64encode(raw).decode()

    def item(self, attribution: dict[str, str] | None, span_id: str) -> dict[str, Any]:
        end = dt.datetime.now(dt.UTC)
        attrs = {"http.request.method": self.method,
                 "url.scheme": self.request_headers.get(":scheme", "https"),
                 "url.path": self._scrub(self.path.split("?", 1)[0]),
                 "server.address": self.host, "server.port": str(self.port),
                 "clrk.gateway": self.gateway,
                 "clrk.decision": "deny" if self.denied else "allow",
                 "clrk.bytes.sent": str(self.bytes_sent),
                 "clrk.bytes.received": str(self.bytes_received)}
        if "?" in self.path:
            attrs["url.query"] = self._scrub(self.path.split("?", 1)[1])
        if self.status:
            attrs["http.response.status_code"] = str(self.status)
        if self.denied:
            attrs["clrk.deny_reason"] = self.denied
        attrs.update({k: self._scrub(v) for k, v in self.attributes.items()})
        request = self._headers("http.request.header.", self.request_headers)
        response = self._headers("http.response.header.", self.response_headers)
        for capture, key in ((self.request_body, "http.request.body"),
                             (self.response_body, "http.response.body")):
            body = self._body(capture)
            if body is not None and capture is not None:
                (request if key == "http.request.body" else response)[key] = body
                attrs[f"clrk.{key}.truncated"] = "true" if capture.truncated else "false"
        name = f"{self.method} {self.host}{attrs['url.path']}"
        summary = call_summary(name, str(self.status or "-"),
                               (end - self.start).total_seconds() * 1000, self.bytes_sent,
                               self.bytes_received, attrs, self.denied)
        return {"kind": "http", "start_time": self.start.isoformat(),
                "duration_ms": (end - self.start).total_seconds() * 1000,
                "name": name, "span_id": span_id, "attributes": attrs,
                "error": bool(self.denied) or self.status >= 500,
                "events": [{"name": "http.request", "attributes": request},
                           {"name": "http.response", "attributes": response}],
                "summary": summary, "attribution": attribution}
