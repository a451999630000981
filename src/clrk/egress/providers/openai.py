"""OpenAI (and Azure OpenAI): chat.completions, responses and embeddings, JSON and SSE.

Streaming chat completions only report usage when asked, so the request is amended
with ``stream_options.include_usage``.
"""

from __future__ import annotations

import json
from typing import Any

from clrk.egress.providers import Codec, Usage, _int


def _details(u: dict[str, Any], key: str, field: str) -> int | None:
    d = u.get(key)
    return _int(d.get(field)) if isinstance(d, dict) else None


class OpenAI(Codec):
    USAGE_PATHS = ("id", "model", "usage.prompt_tokens", "usage.completion_tokens",
                   "usage.input_tokens", "usage.output_tokens",
                   "usage.prompt_tokens_details.cached_tokens",
                   "usage.input_tokens_details.cached_tokens",
                   "usage.completion_tokens_details.reasoning_tokens",
                   "usage.output_tokens_details.reasoning_tokens")

    def operation(self, path: str) -> str:
        p = path.split("?", 1)[0]
        if p.endswith("/embeddings"):
            return "embeddings"
        if p.endswith("/responses"):
            return "responses"
        if p.endswith("/completions") and not p.endswith("/chat/completions"):
            return "text_completion"
        return "chat"

    def cap_output(self, doc: dict[str, Any], limit: int) -> bool:
        key = {"chat": "max_completion_tokens", "responses": "max_output_tokens",
               "text_completion": "max_tokens"}.get(self.request.operation)
        if key is None:
            return False
        doc[key] = limit
        return True

    def read_request(self, doc: dict[str, Any]) -> None:
        super().read_request(doc)
        for key in ("max_completion_tokens", "max_output_tokens"):
            if _int(doc.get(key)) is not None:
                self.request.max_output_tokens = _int(doc.get(key))
        if self.request.model is None and "/deployments/" in self.path:  # Azure
            self.request.model = self.path.split("/deployments/", 1)[1].split("/", 1)[0]

    def rewrite_request(self, doc: dict[str, Any]) -> bool:
        if not self.request.stream or self.request.operation not in ("chat",
                                                                     "text_completion"):
            return False
        options = doc.get("stream_options")
        if isinstance(options, dict) and options.get("include_usage") is True:
            return False
        doc["stream_options"] = {**(options if isinstance(options, dict) else {}),
                                 "include_usage": True}
        return True

    def read_response(self, doc: dict[str, Any]) -> None:
        if isinstance(doc.get("response"), dict):  # responses API stream events
            doc = doc["response"]
        u = doc.get("usage")
        if isinstance(u, dict):
            self.usage.merge(Usage(
                input_tokens=_int(u.get("prompt_tokens", u.get("input_tokens"))),
                output_tokens=_int(u.get("completion_tokens", u.get("output_tokens")))
                if self.request.operation != "embeddings" else 0,
                cache_read_input_tokens=_details(u, "prompt_tokens_details", "cached_tokens")
                or _details(u, "input_tokens_details", "cached_tokens"),
                reasoning_output_tokens=_details(u, "completion_tokens_details",
                                                 "reasoning_tokens")
                or _details(u, "output_tokens_details", "reasoning_tokens")))
        self.usage.merge(Usage(
            response_model=doc["model"] if isinstance(doc.get("model"), str) else None,
            response_id=doc["id"] if isinstance(doc.get("id"), str) else None))

    def error_body(self, status: int, message: str) -> tuple[bytes, str]:
        return json.dumps({"error": {
            "message": message, "type": "requests" if status == 429 else "invalid_request_error",
            "param": None, "code": "rate_limit_exceeded" if status == 429 else "policy_denied",
        }}).encode(), "application/json"
