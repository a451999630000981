"""Provider codecs: what an LLM request asks for and how many tokens its answer used,
read from each provider's own wire format (JSON bodies and SSE streams).

A codec sees the request body once and the response as it streams, and never holds
more of the response than one SSE event, so a long stream costs nothing extra.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, ClassVar

from clrk.egress.providers.sse import EventStream
from clrk.telemetry.pricing import Tokens


@dataclass
class Usage(Tokens):
    """The token counts an answer reported, and which model and response it was."""

    response_model: str | None = None
    response_id: str | None = None

    @property
    def total(self) -> int:
        return (self.input_tokens or 0) + (self.output_tokens or 0)

    def attributes(self, status: int) -> dict[str, str]:
        """The call's GenAI usage attributes, and whether (or why not) usage was read."""
        out: dict[str, str] = {}
        if self.response_model:
            out["gen_ai.response.model"] = self.response_model
        if self.response_id:
            out["gen_ai.response.id"] = self.response_id
        for name, value in (
                ("gen_ai.usage.input_tokens", self.input_tokens),
                ("gen_ai.usage.output_tokens", self.output_tokens),
                ("gen_ai.usage.cache_read.input_tokens", self.cache_read_input_tokens),
                ("gen_ai.usage.cache_creation.input_tokens", self.cache_creation_input_tokens),
                ("gen_ai.usage.reasoning.output_tokens", self.reasoning_output_tokens)):
            if value is not None:
                out[name] = str(value)
        out["clrk.usage.extracted"] = "true" if self.known else "false"
        if not self.known:
            out["clrk.usage.missing_reason"] = (
                f"status {status}" if status >= 400
                else "the response carried no usage the codec could read")
        return out

    def merge(self, other: Usage) -> None:
        """Later figures win (streams repeat cumulative counts)."""
        for name in self.__dataclass_fields__:
            value = getattr(other, name)
            if value is not None:
                setattr(self, name, value)


@dataclass
class Request:
    """What the request body says (None where it says nothing)."""
    operation: str = "chat"
    model: str | None = None
    stream: bool = False
    max_output_tokens: int | None = None
    body: dict[str, Any] | None = None


def _int(v: Any) -> int | None:
    return int(v) if isinstance(v, int | float) and not isinstance(v, bool) else None


@dataclass
class Codec:
    """Base codec: one per provider; subclasses read their usage shape."""
    # Every JSON path (dotted) ``read_response`` reads from a JSON answer: Envoy extracts
    # these alone on the calls it meters (clrk.egress.metered), and ``read_fields``
    # rebuilds the document from them.
    USAGE_PATHS: ClassVar[tuple[str, ...]] = ()
    provider: str = "custom"
    path: str = "/"
    request: Request = field(default_factory=Request)
    usage: Usage = field(default_factory=Usage)
    streaming: bool = False
    _events: EventStream = field(default_factory=EventStream)
    _json: bytearray = field(default_factory=bytearray)
    _json_limit: int = 8 << 20

    def parse_request(self, body: bytes) -> Request:
        self.request = Request(operation=self.operation(self.path))
        try:
            doc = json.loads(body) if body else None
        except ValueError:
            doc = None
        if isinstance(doc, dict):
            self.request.body = doc
            self.read_request(doc)
        return self.request

    def operation(self, path: str) -> str:
        return "chat"

    def read_request(self, doc: dict[str, Any]) -> None:
        model = doc.get("model")
        self.request.model = model if isinstance(model, str) else None
        self.request.stream = doc.get("stream") is True
        self.request.max_output_tokens = _int(doc.get("max_tokens"))

    def rewrite_request(self, doc: dict[str, Any]) -> bool:
        """Change the request body before it leaves (True: changed)."""
        return False

    def cap_output(self, doc: dict[str, Any], limit: int) -> bool:
        """Ask for at most ``limit`` output tokens where the request left it open."""
        return False

    def response_started(self, content_type: str, headers: dict[str, str]) -> None:
        self.streaming = "text/event-stream" in content_type
        self.read_headers(headers)

    def read_headers(self, headers: dict[str, str]) -> None:
        pass

    def feed(self, chunk: bytes) -> None:
        if self.streaming:
            for event, data in self._events.feed(chunk):
                self._event(event, data)
        elif len(self._json) < self._json_limit:
            self._json += chunk[: self._json_limit - len(self._json)]

    def finish(self) -> Usage:
        if self.streaming:
            for event, data in self._events.flush():
                self._event(event, data)
        elif self._json:
            try:
                doc = json.loads(bytes(self._json))
            except ValueError:
                doc = None
            if isinstance(doc, dict):
                self.read_response(doc)
        return self.usage

    def _event(self, event: str, data: str) -> None:
        if not data or data == "[DONE]":
            return
        try:
            doc = json.loads(data)
        except ValueError:
            return
        if isinstance(doc, dict):
            self.read_event(event, doc)

    def read_response(self, doc: dict[str, Any]) -> None:
        pass

    def read_fields(self, fields: dict[str, Any]) -> Usage:
        """Usage from a JSON answer's values at ``USAGE_PATHS``, keyed by path."""
        doc: dict[str, Any] = {}
        for path, value in fields.items():
            *parents, leaf = path.split(".")
            node = doc
            for key in parents:
                node = node.setdefault(key, {})
                if not isinstance(node, dict):
                    break
            else:
                node[leaf] = value
        self.read_response(doc)
        return self.usage

    def read_event(self, event: str, doc: dict[str, Any]) -> None:
        self.read_response(doc)

    def error_body(self, status: int, message: str) -> tuple[bytes, str]:
        """A refusal in the provider's own error shape."""
        return json.dumps({"error": {"message": message, "type": "rate_limit_error"
                                     if status == 429 else "clrk_policy_error",
                                     "code": status}}).encode(), "application/json"


def codec_for(provider: str, path: str) -> Codec:
    from clrk.egress.providers import anthropic, bedrock, google, openai

    kinds: dict[str, type[Codec]] = {
        "anthropic": anthropic.Anthropic, "openai": openai.OpenAI,
        "azure-openai": openai.OpenAI, "google": google.Google, "bedrock": bedrock.Bedrock,
    }
    codec = kinds.get(provider, openai.OpenAI)(provider=provider, path=path)
    return codec


__all__ = ["Codec", "Request", "Usage", "codec_for"]
