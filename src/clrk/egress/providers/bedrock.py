"""Amazon Bedrock runtime: Converse and InvokeModel, JSON and AWS event streams."""

from __future__ import annotations

import base64
import json
import struct
import urllib.parse
from typing import Any

from clrk.egress.providers import Codec, Usage, _int


class Bedrock(Codec):
    _frames: bytearray | None = None

    def operation(self, path: str) -> str:
        return "chat" if "/converse" in path else "invoke_model"

    def cap_output(self, doc: dict[str, Any], limit: int) -> bool:
        if self.request.operation != "chat":
            return False
        config = doc.get("inferenceConfig")
        doc["inferenceConfig"] = {**(config if isinstance(config, dict) else {}),
                                  "maxTokens": limit}
        return True

    def read_request(self, doc: dict[str, Any]) -> None:
        p = self.path.split("?", 1)[0]
        if p.startswith("/model/"):
            self.request.model = urllib.parse.unquote(p[len("/model/"):].split("/", 1)[0])
        self.request.stream = p.endswith(("/converse-stream", "/invoke-with-response-stream"))
        config = doc.get("inferenceConfig")
        if isinstance(config, dict):
            self.request.max_output_tokens = _int(config.get("maxTokens"))
        elif _int(doc.get("max_tokens")) is not None:
            self.request.max_output_tokens = _int(doc.get("max_tokens"))

    def parse_request(self, body: bytes) -> Any:
        request = super().parse_request(body)
        if request.model is None:
            self.read_request({})
        return request

    def response_started(self, content_type: str, headers: dict[str, str]) -> None:
        super().response_started(content_type, headers)
        self.streaming = False
        self._frames = bytearray() if "vnd.amazon.eventstream" in content_type else None

    def read_headers(self, headers: dict[str, str]) -> None:
        self.usage.merge(Usage(
            input_tokens=_int(_number(headers.get("x-amzn-bedrock-input-token-count"))),
            output_tokens=_int(_number(headers.get("x-amzn-bedrock-output-token-count")))))

    def feed(self, chunk: bytes) -> None:
        if self._frames is None:
            super().feed(chunk)
            return
        self._frames += chunk
        while len(self._frames) >= 12:
            total, headers_len = struct.unpack(">II", self._frames[:8])
            if total < 16 or total > (16 << 20):
                self._frames.clear()
                return
            if len(self._frames) < total:
                return
            payload = bytes(self._frames[12 + headers_len: total - 4])
            del self._frames[:total]
            self._payload(payload)

    def _payload(self, payload: bytes) -> None:
        try:
            doc = json.loads(payload)
        except ValueError:
            return
        if isinstance(doc, dict) and isinstance(doc.get("bytes"), str):  # invoke stream
            try:
                doc = json.loads(base64.b64decode(doc["bytes"]))
            except ValueError:
                return
        if isinstance(doc, dict):
            self.read_response(doc)

    def read_response(self, doc: dict[str, Any]) -> None:
        u = doc.get("usage")
        if isinstance(u, dict) and ("inputTokens" in u or "outputTokens" in u):
            self.usage.merge(Usage(
                input_tokens=_int(u.get("inputTokens")),
                output_tokens=_int(u.get("outputTokens")),
                cache_read_input_tokens=_int(u.get("cacheReadInputTokens")),
                cache_creation_input_tokens=_int(u.get("cacheWriteInputTokens"))))
        elif isinstance(u, dict):  # an Anthropic model's own body through InvokeModel
            self.usage.merge(Usage(
                input_tokens=_int(u.get("input_tokens")),
                output_tokens=_int(u.get("output_tokens"))))
        metrics = doc.get("amazon-bedrock-invocationMetrics")
        if isinstance(metrics, dict):
            self.usage.merge(Usage(input_tokens=_int(metrics.get("inputTokenCount")),
                                   output_tokens=_int(metrics.get("outputTokenCount"))))
        if isinstance(doc.get("metadata"), dict):  # converse-stream's metadata event
            self.read_response(doc["metadata"])

    def finish(self) -> Usage:
        return self.usage if self._frames is not None else super().finish()

    def error_body(self, status: int, message: str) -> tuple[bytes, str]:
        return json.dumps({"message": message}).encode(), "application/json"


def _number(v: str | None) -> int | None:
    return int(v) if v is not None and v.strip().isdigit() else None
