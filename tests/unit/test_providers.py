"""Provider codecs read usage from each provider's own JSON and SSE shapes."""

from __future__ import annotations

import base64
import json
import struct
import zlib

from clrk.egress.providers import Usage, codec_for
from tests.fake_providers import FakeProviders, Seen


def _run(provider: str, path: str, request: dict[str, object], status: int = 200) -> Usage:
    fake = FakeProviders()
    _, ctype, body, _ = fake.answer(Seen("POST", path, {"host": "x"}, json.dumps(request)
                                         .encode()))
    codec = codec_for(provider, path)
    doc = dict(request)
    codec.parse_request(json.dumps(request).encode())
    if codec.rewrite_request(doc):  # what the proxy would send instead
        _, ctype, body, _ = fake.answer(Seen("POST", path, {"host": "x"},
                                             json.dumps(doc).encode()))
    codec.response_started(ctype, {})
    for i in range(0, len(body), 7):  # arbitrary chunking: events split anywhere
        codec.feed(body[i:i + 7])
    return codec.finish()


def test_anthropic_json_and_sse() -> None:
    for stream in (False, True):
        u = _run("anthropic", "/v1/messages", {"model": "claude-x", "stream": stream})
        assert (u.input_tokens, u.output_tokens, u.cache_read_input_tokens) == (12, 24, 3)
        assert u.response_model == "claude-x"


def test_openai_chat_stream_gets_usage_injected() -> None:
    codec = codec_for("openai", "/v1/chat/completions")
    doc = {"model": "gpt-x", "stream": True}
    codec.parse_request(json.dumps(doc).encode())
    assert codec.rewrite_request(doc)
    assert doc["stream_options"] == {"include_usage": True}
    u = _run("openai", "/v1/chat/completions", {"model": "gpt-x", "stream": True})
    assert (u.input_tokens, u.output_tokens) == (13, 5)
    u = _run("openai", "/v1/chat/completions", {"model": "gpt-x"})
    assert (u.input_tokens, u.output_tokens, u.response_model) == (13, 5, "gpt-x")


def test_openai_responses_and_embeddings() -> None:
    for stream in (False, True):
        u = _run("openai", "/v1/responses", {"model": "gpt-r", "stream": stream})
        assert (u.input_tokens, u.output_tokens, u.cache_read_input_tokens,
                u.reasoning_output_tokens) == (13, 5, 2, 1)
    u = _run("openai", "/v1/embeddings", {"model": "emb"})
    assert (u.input_tokens, u.output_tokens) == (6, 0)


def test_azure_model_from_the_deployment() -> None:
    codec = codec_for("azure-openai",
                      "/openai/deployments/my-gpt/chat/completions?api-version=2024-10-21")
    assert codec.parse_request(b'{"messages": []}').model == "my-gpt"


def test_gemini_json_sse_and_array_stream() -> None:
    for path in ("/v1beta/models/gemini-x:generateContent",
                 "/v1beta/models/gemini-x:streamGenerateContent?alt=sse",
                 "/v1beta/models/gemini-x:streamGenerateContent"):
        u = _run("google", path, {"contents": []})
        assert (u.input_tokens, u.output_tokens, u.response_model) == (9, 4, "gemini-x"), path


def _frame(payload: bytes) -> bytes:
    headers = b""
    total = 12 + len(headers) + len(payload) + 4
    prelude = struct.pack(">II", total, len(headers))
    prelude += struct.pack(">I", zlib.crc32(prelude))
    body = prelude + headers + payload
    return body + struct.pack(">I", zlib.crc32(body))


def test_bedrock_converse_invoke_and_streams() -> None:
    codec = codec_for("bedrock", "/model/anthropic.claude-3/converse")
    codec.parse_request(b'{"messages": []}')
    assert codec.request.model == "anthropic.claude-3"
    codec.response_started("application/json", {})
    codec.feed(json.dumps({"usage": {"inputTokens": 7, "outputTokens": 3}}).encode())
    assert (codec.finish().input_tokens, codec.usage.output_tokens) == (7, 3)

    codec = codec_for("bedrock", "/model/m/invoke")
    codec.parse_request(b"{}")
    codec.response_started("application/json", {"x-amzn-bedrock-input-token-count": "5",
                                                 "x-amzn-bedrock-output-token-count": "2"})
    assert (codec.finish().input_tokens, codec.usage.output_tokens) == (5, 2)

    codec = codec_for("bedrock", "/model/m/converse-stream")
    codec.parse_request(b"{}")
    codec.response_started("application/vnd.amazon.eventstream", {})
    stream = _frame(b'{"contentBlockDelta": {"delta": {"text": "hi"}}}') + _frame(
        json.dumps({"metadata": {"usage": {"inputTokens": 8, "outputTokens": 4}}}).encode())
    for i in range(0, len(stream), 5):
        codec.feed(stream[i:i + 5])
    assert (codec.finish().input_tokens, codec.usage.output_tokens) == (8, 4)

    codec = codec_for("bedrock", "/model/m/invoke-with-response-stream")
    codec.parse_request(b"{}")
    codec.response_started("application/vnd.amazon.eventstream", {})
    inner = {"type": "message_stop", "amazon-bedrock-invocationMetrics": {
        "inputTokenCount": 11, "outputTokenCount": 6}}
    codec.feed(_frame(json.dumps({"bytes": base64.b64encode(json.dumps(inner).encode())
                                  .decode()}).encode()))
    assert (codec.finish().input_tokens, codec.usage.output_tokens) == (11, 6)


def test_unreadable_usage_is_reported_as_unknown() -> None:
    codec = codec_for("anthropic", "/v1/messages")
    codec.parse_request(b"not json")
    codec.response_started("application/json", {})
    codec.feed(b"<html>")
    assert not codec.finish().known


def test_error_bodies_use_the_providers_shapes() -> None:
    body, _ = codec_for("anthropic", "/v1/messages").error_body(429, "budget")
    assert json.loads(body)["error"]["type"] == "rate_limit_error"
    body, _ = codec_for("openai", "/v1/chat/completions").error_body(429, "budget")
    assert json.loads(body)["error"]["code"] == "rate_limit_exceeded"
    body, _ = codec_for("google", "/v1beta/models/g:generateContent").error_body(429, "b")
    assert json.loads(body)["error"]["status"] == "RESOURCE_EXHAUSTED"
