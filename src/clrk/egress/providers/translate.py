"""Requests and answers translated between two providers' wire formats, for a Backend
whose ``schema`` is not the format its route's agents speak: Anthropic Messages and
OpenAI Chat Completions, either way, JSON and SSE streams alike.

The agent keeps speaking its own API; the gateway rewrites the request (body and path)
for the Backend and the answer back, event by event for a stream, so the agent's SDK
cannot tell. Text conversations are translated (system prompt, user and assistant
turns, sampling and stop settings, token limits, usage, stop reasons); a request with
anything else (images, tools, documents) is refused with the field named, never sent
half-translated. Pure: no I/O, one instance per request.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field
from typing import Any

from clrk.egress.providers.sse import EventStream, WholeJson

PATHS = {"anthropic": "/v1/messages", "openai": "/v1/chat/completions"}
PAIRS = {("anthropic", "openai"), ("openai", "anthropic")}
ANTHROPIC_VERSION = "2023-06-01"
DEFAULT_MAX_TOKENS = 4096  # Anthropic requires max_tokens; OpenAI requests may omit it
_STOP_TO_OPENAI = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length",
                   "tool_use": "tool_calls", "refusal": "content_filter"}
_STOP_TO_ANTHROPIC = {"stop": "end_turn", "length": "max_tokens",
                      "tool_calls": "tool_use", "content_filter": "refusal"}


class Untranslatable(ValueError):
    """The request uses something the target API has no translation for."""


def supported(source: str, target: str) -> bool:
    return (source, target) in PAIRS


def _text(content: Any, where: str) -> str:
    """A message's content as text: a string, or a list of text blocks/parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        out = []
        for i, block in enumerate(content):
            if not isinstance(block, dict) or block.get("type") != "text":
                kind = block.get("type") if isinstance(block, dict) else type(block).__name__
                raise Untranslatable(f"{where}[{i}] is a {kind!r} block: only text is "
                                     f"translated between providers")
            out.append(str(block.get("text", "")))
        return "".join(out)
    if content is None:
        return ""
    raise Untranslatable(f"{where} is neither text nor a list of text blocks")


def _refuse_fields(doc: dict[str, Any], fields: tuple[str, ...]) -> None:
    for name in fields:
        if doc.get(name) not in (None, [], {}):
            raise Untranslatable(f"the request's {name!r} has no translation between "
                                 f"providers (only text conversations are translated)")


def anthropic_to_openai(doc: dict[str, Any]) -> dict[str, Any]:
    _refuse_fields(doc, ("tools", "tool_choice", "thinking"))
    messages: list[dict[str, Any]] = []
    if doc.get("system"):
        messages.append({"role": "system", "content": _text(doc["system"], "system")})
    for i, m in enumerate(doc.get("messages") or []):
        role = m.get("role") if isinstance(m, dict) else None
        if role not in ("user", "assistant"):
            raise Untranslatable(f"messages[{i}].role {role!r} is not user or assistant")
        messages.append({"role": role, "content": _text(m.get("content"),
                                                        f"messages[{i}].content")})
    out: dict[str, Any] = {"model": doc.get("model"), "messages": messages}
    if doc.get("max_tokens") is not None:
        out["max_tokens"] = doc["max_tokens"]
    for same in ("temperature", "top_p"):
        if doc.get(same) is not None:
            out[same] = doc[same]
    if doc.get("stop_sequences"):
        out["stop"] = doc["stop_sequences"]
    if doc.get("stream"):
        out["stream"] = True
        out["stream_options"] = {"include_usage": True}  # Anthropic streams carry usage
    return out


def openai_to_anthropic(doc: dict[str, Any]) -> dict[str, Any]:
    _refuse_fields(doc, ("tools", "tool_choice", "functions", "response_format"))
    if int(doc.get("n") or 1) != 1:
        raise Untranslatable("the request's 'n' asks for several choices: Anthropic "
                             "answers one")
    system: list[str] = []
    messages: list[dict[str, Any]] = []
    for i, m in enumerate(doc.get("messages") or []):
        role = m.get("role") if isinstance(m, dict) else None
        text = _text(m.get("content") if isinstance(m, dict) else None,
                     f"messages[{i}].content")
        if role in ("system", "developer"):
            system.append(text)
        elif role in ("user", "assistant"):
            messages.append({"role": role, "content": text})
        else:
            raise Untranslatable(f"messages[{i}].role {role!r} has no translation "
                                 f"(system, developer, user and assistant do)")
    out: dict[str, Any] = {"model": doc.get("model"), "messages": messages,
                           "max_tokens": doc.get("max_completion_tokens")
                           or doc.get("max_tokens") or DEFAULT_MAX_TOKENS}
    if system:
        out["system"] = "\n\n".join(system)
    for same in ("temperature", "top_p"):
        if doc.get(same) is not None:
            out[same] = doc[same]
    stop = doc.get("stop")
    if stop:
        out["stop_sequences"] = [stop] if isinstance(stop, str) else list(stop)
    if doc.get("stream"):
        out["stream"] = True
    return out


def _sse(event: str | None, doc: Any) -> bytes:
    data = doc if isinstance(doc, str) else json.dumps(doc, separators=(",", ":"))
    return (f"event: {event}\n" if event else "").encode() + f"data: {data}\n\n".encode()


@dataclass
class Translation:
    """One request's translation from the agent's format (``source``) to the Backend's
    (``target``) and of the answer back."""

    source: str
    target: str
    include_usage: bool = False  # an OpenAI agent asked for the usage chunk
    streaming: bool = False
    ok: bool = True  # the answer's status was 2xx
    _events: EventStream = field(default_factory=EventStream)
    _json: WholeJson = field(default_factory=WholeJson)
    # Stream state
    _id: str = field(default_factory=lambda: secrets.token_hex(12))
    _model: str = ""
    _started: bool = False
    _stop: str | None = None
    _usage: dict[str, int] = field(default_factory=dict)
    _done: bool = False

    def request(self, doc: dict[str, Any]) -> tuple[dict[str, Any], str]:
        """The Backend's request body and path."""
        self._model = str(doc.get("model") or "")
        if self.source == "anthropic":
            return anthropic_to_openai(doc), PATHS["openai"]
        self.include_usage = bool((doc.get("stream_options") or {}).get("include_usage"))
        return openai_to_anthropic(doc), PATHS["anthropic"]

    def headers(self) -> tuple[dict[str, str], list[str]]:
        """Request headers to set and to remove for the Backend: the agent's provider's
        own (its placeholder key included) do not go to another provider."""
        if self.target == "anthropic":
            return {"anthropic-version": ANTHROPIC_VERSION}, ["authorization",
                                                              "openai-organization",
                                                              "openai-project"]
        return {}, ["anthropic-version", "anthropic-beta", "x-api-key"]

    def response_started(self, status: int, content_type: str) -> None:
        self.streaming = 200 <= status < 300 and "text/event-stream" in content_type
        self.ok = 200 <= status < 300

    def feed(self, chunk: bytes, end: bool) -> bytes:
        """The answer's bytes in the agent's format: as they come for a stream, all at
        the end for JSON."""
        if self.streaming:
            out = b"".join(self._event(e, d) for e, d in self._events.read(chunk, end))
            return out + self._close() if end else out
        whole = self._json.feed(chunk, end)
        if whole is None:
            return b""
        raw, doc = whole
        if not isinstance(doc, dict):  # not JSON, or no object: passed on as it came
            return raw
        if not self.ok:
            return json.dumps(self._error(doc)).encode()
        return json.dumps(self._message(doc)).encode()

    # -- JSON answers --------------------------------------------------------------------

    def _message(self, doc: dict[str, Any]) -> dict[str, Any]:
        if self.target == "openai":  # an OpenAI completion for an Anthropic agent
            choice = (doc.get("choices") or [{}])[0]
            usage = doc.get("usage") or {}
            text = (choice.get("message") or {}).get("content") or ""
            return {"id": f"msg_{doc.get('id') or self._id}", "type": "message",
                    "role": "assistant", "model": doc.get("model") or self._model,
                    "content": [{"type": "text", "text": text}],
                    "stop_reason": _STOP_TO_ANTHROPIC.get(choice.get("finish_reason") or "",
                                                          "end_turn"),
                    "stop_sequence": None,
                    "usage": {"input_tokens": int(usage.get("prompt_tokens") or 0),
                              "output_tokens": int(usage.get("completion_tokens") or 0)}}
        usage = doc.get("usage") or {}
        text = "".join(b.get("text", "") for b in doc.get("content") or []
                       if isinstance(b, dict) and b.get("type") == "text")
        prompt, completion = (int(usage.get("input_tokens") or 0),
                              int(usage.get("output_tokens") or 0))
        return {"id": f"chatcmpl-{doc.get('id') or self._id}", "object": "chat.completion",
                "created": 0, "model": doc.get("model") or self._model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                             "finish_reason": _STOP_TO_OPENAI.get(
                                 doc.get("stop_reason") or "", "stop"), "logprobs": None}],
                "usage": {"prompt_tokens": prompt, "completion_tokens": completion,
                          "total_tokens": prompt + completion}}

    def _error(self, doc: dict[str, Any]) -> dict[str, Any]:
        found = doc.get("error")
        err: dict[str, Any] = found if isinstance(found, dict) else {}
        message = str(err.get("message") or json.dumps(doc)[:500])
        if self.source == "anthropic":
            return {"type": "error", "error": {"type": str(err.get("type") or "api_error"),
                                               "message": message}}
        return {"error": {"message": message, "type": str(err.get("type") or "api_error"),
                          "code": None}}

    # -- streams -------------------------------------------------------------------------

    def _event(self, event: str, data: str) -> bytes:
        if data == "[DONE]":
            return self._close() if self.source == "anthropic" else b""
        try:
            doc = json.loads(data)
        except ValueError:
            return b""
        if not isinstance(doc, dict):
            return b""
        if self.target == "openai":
            return self._from_openai_chunk(doc)
        return self._from_anthropic_event(doc.get("type") or event, doc)

    def _from_openai_chunk(self, doc: dict[str, Any]) -> bytes:
        """OpenAI chunks as Anthropic events (for an Anthropic agent)."""
        out = b""
        self._model = str(doc.get("model") or self._model)
        if not self._started:
            self._started = True
            out += _sse("message_start", {"type": "message_start", "message": {
                "id": f"msg_{doc.get('id') or self._id}", "type": "message",
                "role": "assistant", "model": self._model, "content": [],
                "stop_reason": None, "stop_sequence": None,
                "usage": {"input_tokens": 0, "output_tokens": 0}}})
            out += _sse("content_block_start", {"type": "content_block_start", "index": 0,
                                                "content_block": {"type": "text", "text": ""}})
        for choice in doc.get("choices") or []:
            text = (choice.get("delta") or {}).get("content")
            if text:
                out += _sse("content_block_delta", {"type": "content_block_delta", "index": 0,
                                                    "delta": {"type": "text_delta",
                                                              "text": text}})
            if choice.get("finish_reason"):
                self._stop = _STOP_TO_ANTHROPIC.get(choice["finish_reason"], "end_turn")
        usage = doc.get("usage")
        if isinstance(usage, dict):
            self._usage = {"input_tokens": int(usage.get("prompt_tokens") or 0),
                           "output_tokens": int(usage.get("completion_tokens") or 0)}
        return out

    def _from_anthropic_event(self, kind: str, doc: dict[str, Any]) -> bytes:
        """Anthropic events as OpenAI chunks (for an OpenAI agent)."""
        def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
            return _sse(None, {"id": f"chatcmpl-{self._id}", "object": "chat.completion.chunk",
                               "created": 0, "model": self._model, "choices": [{
                                   "index": 0, "delta": delta, "finish_reason": finish}]})

        if kind == "message_start":
            message = doc.get("message") or {}
            self._model = str(message.get("model") or self._model)
            self._id = str(message.get("id") or self._id)
            self._usage["prompt_tokens"] = int((message.get("usage") or {})
                                               .get("input_tokens") or 0)
            return chunk({"role": "assistant", "content": ""})
        if kind == "content_block_delta":
            delta = doc.get("delta") or {}
            if delta.get("type") == "text_delta" and delta.get("text"):
                return chunk({"content": delta["text"]})
            return b""
        if kind == "message_delta":
            stop = (doc.get("delta") or {}).get("stop_reason")
            self._stop = _STOP_TO_OPENAI.get(stop or "", "stop")
            self._usage["completion_tokens"] = int((doc.get("usage") or {})
                                                   .get("output_tokens") or 0)
            return b""
        if kind == "message_stop":
            return self._close()
        if kind == "error":
            return _sse(None, self._error(doc))
        return b""

    def _close(self) -> bytes:
        """The end of the agent's stream, once."""
        if self._done or (not self._started and self.target == "openai"):
            return b""
        self._done = True
        if self.target == "openai":  # ... of an Anthropic stream
            return (_sse("content_block_stop", {"type": "content_block_stop", "index": 0})
                    + _sse("message_delta", {"type": "message_delta", "delta": {
                        "stop_reason": self._stop or "end_turn", "stop_sequence": None},
                        "usage": {"output_tokens": self._usage.get("output_tokens", 0),
                                  "input_tokens": self._usage.get("input_tokens", 0)}})
                    + _sse("message_stop", {"type": "message_stop"}))
        out = _sse(None, {"id": f"chatcmpl-{self._id}", "object": "chat.completion.chunk",
                          "created": 0, "model": self._model, "choices": [{
                              "index": 0, "delta": {},
                              "finish_reason": self._stop or "stop"}]})
        if self.include_usage:
            prompt = self._usage.get("prompt_tokens", 0)
            completion = self._usage.get("completion_tokens", 0)
            out += _sse(None, {"id": f"chatcmpl-{self._id}",
                               "object": "chat.completion.chunk", "created": 0,
                               "model": self._model, "choices": [], "usage": {
                                   "prompt_tokens": prompt, "completion_tokens": completion,
                                   "total_tokens": prompt + completion}})
        return out + _sse(None, "[DONE]")
