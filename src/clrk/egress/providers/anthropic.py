"""Anthropic Messages API: JSON and SSE usage."""

from __future__ import annotations

import json
from typing import Any

from clrk.egress.providers import Codec, Usage, _int


def _usage(u: Any, into: Usage) -> None:
    if not isinstance(u, dict):
        return
    into.merge(Usage(input_tokens=_int(u.get("input_tokens")),
                     output_tokens=_int(u.get("output_tokens")),
                     cache_read_input_tokens=_int(u.get("cache_read_input_tokens")),
                     cache_creation_input_tokens=_int(u.get("cache_creation_input_tokens"))))


class Anthropic(Codec):
    USAGE_PATHS = ("id", "model", "usage.input_tokens", "usage.output_tokens",
                   "usage.cache_read_input_tokens", "usage.cache_creation_input_tokens")

    def operation(self, path: str) -> str:
        return "count_tokens" if path.endswith("/count_tokens") else "chat"

    def cap_output(self, doc: dict[str, Any], limit: int) -> bool:
        doc["max_tokens"] = limit
        return True

    def read_response(self, doc: dict[str, Any]) -> None:
        _usage(doc.get("usage"), self.usage)
        self.usage.merge(Usage(response_model=doc.get("model") if isinstance(
            doc.get("model"), str) else None, response_id=doc.get("id") if isinstance(
            doc.get("id"), str) else None))

    def read_event(self, event: str, doc: dict[str, Any]) -> None:
        kind = doc.get("type") or event
        if kind == "message_start" and isinstance(doc.get("message"), dict):
            self.read_response(doc["message"])
        elif kind == "message_delta":
            _usage(doc.get("usage"), self.usage)

    def error_body(self, status: int, message: str) -> tuple[bytes, str]:
        kind = "rate_limit_error" if status == 429 else "permission_error"
        return json.dumps({"type": "error", "error": {"type": kind, "message": message}}) \
            .encode(), "application/json"
