"""Translation between Anthropic Messages and OpenAI Chat Completions: requests, JSON
answers and SSE streams either way (fed a few bytes at a time, as Envoy may), read back
by the codecs that count tokens, and the refusal of what has no translation. (The
official SDKs read translated answers in tests/e2e/test_examples.py, in a sandbox.)"""

from __future__ import annotations

import json
from typing import Any

import pytest

from clrk.egress.providers import codec_for
from clrk.egress.providers.translate import Translation, Untranslatable


def sse(events: list[tuple[str | None, Any]]) -> bytes:
    out = b""
    for name, data in events:
        out += (f"event: {name}\n" if name else "").encode()
        out += b"data: " + (data if isinstance(data, bytes) else json.dumps(data).encode())
        out += b"\n\n"
    return out


def pieces(t: Translation, body: bytes, size: int = 7) -> bytes:
    out = b""
    for at in range(0, len(body), size):
        out += t.feed(body[at:at + size], False)
    return out + t.feed(b"", True)


def events(body: bytes) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for block in body.decode().strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines())
        if lines["data"] != "[DONE]":
            out.append((lines.get("event", ""), json.loads(lines["data"])))
    return out


def test_anthropic_request_to_openai() -> None:
    t = Translation("anthropic", "openai")
    doc, path = t.request({
        "model": "claude-x", "max_tokens": 50, "system": [{"type": "text", "text": "Be brief."}],
        "messages": [{"role": "user", "content": "hi"},
                     {"role": "assistant", "content": [{"type": "text", "text": "yo"}]}],
        "temperature": 0.2, "stop_sequences": ["END"], "stream": True})
    assert path == "/v1/chat/completions"
    assert doc == {"model": "claude-x", "max_tokens": 50, "temperature": 0.2, "stop": ["END"],
                   "stream": True, "stream_options": {"include_usage": True},
                   "messages": [{"role": "system", "content": "Be brief."},
                                {"role": "user", "content": "hi"},
                                {"role": "assistant", "content": "yo"}]}
    assert t.headers() == ({}, ["anthropic-version", "anthropic-beta", "x-api-key"])


def test_openai_request_to_anthropic() -> None:
    t = Translation("openai", "anthropic")
    doc, path = t.request({"model": "gpt-x", "messages": [
        {"role": "system", "content": "Be brief."}, {"role": "developer", "content": "JSON."},
        {"role": "user", "content": [{"type": "text", "text": "hi"}]}], "stop": "END"})
    assert path == "/v1/messages"
    assert doc == {"model": "gpt-x", "max_tokens": 4096, "system": "Be brief.\n\nJSON.",
                   "stop_sequences": ["END"], "messages": [{"role": "user", "content": "hi"}]}
    assert t.headers() == ({"anthropic-version": "2023-06-01"},
                           ["authorization", "openai-organization", "openai-project"])


@pytest.mark.parametrize(("source", "doc", "named"), [
    ("anthropic", {"messages": [{"role": "user", "content": [
        {"type": "image", "source": {}}]}]}, "messages[0].content[0] is a 'image' block"),
    ("anthropic", {"messages": [], "tools": [{"name": "x"}]}, "'tools'"),
    ("openai", {"messages": [{"role": "tool", "content": "x"}]}, "messages[0].role 'tool'"),
    ("openai", {"messages": [], "n": 2}, "'n'"),
])
def test_what_has_no_translation_is_refused_by_name(source: str, doc: dict[str, Any],
                                                    named: str) -> None:
    target = "openai" if source == "anthropic" else "anthropic"
    with pytest.raises(Untranslatable, match=named.replace("[", r"\[").replace("]", r"\]")):
        Translation(source, target).request(doc)


def test_openai_json_answer_for_an_anthropic_agent() -> None:
    t = Translation("anthropic", "openai")
    t.request({"model": "claude-x", "messages": []})
    t.response_started(200, "application/json")
    body = json.dumps({"id": "c1", "object": "chat.completion", "model": "gpt-4o",
                       "choices": [{"index": 0, "message": {"role": "assistant",
                                                            "content": "Hello"},
                                    "finish_reason": "length"}],
                       "usage": {"prompt_tokens": 13, "completion_tokens": 5}}).encode()
    assert t.feed(body[:10], False) == b""  # JSON is answered whole, at the end
    message = json.loads(t.feed(body[10:], True))
    assert message["type"] == "message" and message["role"] == "assistant"
    assert message["content"] == [{"type": "text", "text": "Hello"}]
    assert (message["stop_reason"], message["usage"]) == (
        "max_tokens", {"input_tokens": 13, "output_tokens": 5})


def test_anthropic_json_answer_for_an_openai_agent() -> None:
    t = Translation("openai", "anthropic")
    t.request({"model": "gpt-x", "messages": []})
    t.response_started(200, "application/json")
    out = pieces(t, json.dumps({
        "id": "m1", "type": "message", "model": "claude-x", "role": "assistant",
        "content": [{"type": "text", "text": "Hel"}, {"type": "text", "text": "lo"}],
        "stop_reason": "end_turn", "usage": {"input_tokens": 12, "output_tokens": 24}})
        .encode())
    completion = json.loads(out)
    assert completion["object"] == "chat.completion"
    assert completion["choices"][0]["message"] == {"role": "assistant", "content": "Hello"}
    assert completion["choices"][0]["finish_reason"] == "stop"
    assert completion["usage"] == {"prompt_tokens": 12, "completion_tokens": 24,
                                   "total_tokens": 36}


def test_an_error_answer_keeps_the_agents_error_shape() -> None:
    t = Translation("anthropic", "openai")
    t.request({"model": "claude-x", "messages": []})
    t.response_started(429, "application/json")
    out = json.loads(t.feed(json.dumps({"error": {"message": "slow down",
                                                  "type": "rate_limit"}}).encode(), True))
    assert out == {"type": "error", "error": {"type": "rate_limit", "message": "slow down"}}


def test_openai_stream_for_an_anthropic_agent() -> None:
    t = Translation("anthropic", "openai")
    t.request({"model": "claude-x", "messages": [], "stream": True})
    t.response_started(200, "text/event-stream")
    chunk = {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o"}
    out = pieces(t, sse([
        (None, {**chunk, "choices": [{"index": 0, "delta": {"role": "assistant",
                                                            "content": "Hel"}}]}),
        (None, {**chunk, "choices": [{"index": 0, "delta": {"content": "lo"}}]}),
        (None, {**chunk, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}),
        (None, {**chunk, "choices": [], "usage": {"prompt_tokens": 13,
                                                  "completion_tokens": 5}}),
        (None, b"[DONE]")]))
    parsed = events(out)
    assert [name for name, _ in parsed] == [doc["type"] for _, doc in parsed] == [
        "message_start", "content_block_start", "content_block_delta",
        "content_block_delta", "content_block_stop", "message_delta", "message_stop"]
    assert "".join(doc["delta"]["text"] for name, doc in parsed
                   if name == "content_block_delta") == "Hello"
    assert parsed[-2][1]["delta"]["stop_reason"] == "end_turn"
    # The agent's codec counts the tokens from the translated stream.
    codec = codec_for("anthropic", "/v1/messages")
    codec.response_started("text/event-stream", {})
    codec.feed(out)
    usage = codec.finish()
    assert (usage.input_tokens, usage.output_tokens) == (13, 5)


def test_anthropic_stream_for_an_openai_agent() -> None:
    t = Translation("openai", "anthropic")
    t.request({"model": "gpt-x", "messages": [], "stream": True,
               "stream_options": {"include_usage": True}})
    t.response_started(200, "text/event-stream")
    out = pieces(t, sse([
        ("message_start", {"type": "message_start", "message": {
            "id": "m1", "model": "claude-x", "usage": {"input_tokens": 12}}}),
        ("content_block_start", {"type": "content_block_start", "index": 0,
                                 "content_block": {"type": "text", "text": ""}}),
        ("content_block_delta", {"type": "content_block_delta", "index": 0,
                                 "delta": {"type": "text_delta", "text": "Hi"}}),
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "max_tokens"},
                           "usage": {"output_tokens": 24}}),
        ("message_stop", {"type": "message_stop"})]), size=5)
    assert out.endswith(b"data: [DONE]\n\n")
    chunks = [doc for _, doc in events(out)]
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks
                   if c["choices"]) == "Hi"
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]][-1] == "length"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["total_tokens"] == 36
    codec = codec_for("openai", "/v1/chat/completions")
    codec.response_started("text/event-stream", {})
    codec.feed(out)
    usage = codec.finish()
    assert (usage.input_tokens, usage.output_tokens) == (12, 24)
