"""Google Gemini (generativelanguage and Vertex): generateContent and
streamGenerateContent, as SSE (``alt=sse``) or as one JSON array."""

from __future__ import annotations

import json
from typing import Any

from clrk.egress.providers import Codec, Usage, _int


class Google(Codec):
    USAGE_PATHS = ("responseId", "modelVersion", "usageMetadata.promptTokenCount",
                   "usageMetadata.candidatesTokenCount",
                   "usageMetadata.cachedContentTokenCount",
                   "usageMetadata.thoughtsTokenCount")

    def operation(self, path: str) -> str:
        p = path.split("?", 1)[0]
        if p.endswith((":embedContent", ":batchEmbedContents")):
            return "embeddings"
        if p.endswith(":countTokens"):
            return "count_tokens"
        return "generate_content"

    def cap_output(self, doc: dict[str, Any], limit: int) -> bool:
        if self.request.operation != "generate_content":
            return False
        config = doc.get("generationConfig")
        doc["generationConfig"] = {**(config if isinstance(config, dict) else {}),
                                   "maxOutputTokens": limit}
        return True

    def read_request(self, doc: dict[str, Any]) -> None:
        p = self.path.split("?", 1)[0]
        if "/models/" in p:
            self.request.model = p.rsplit("/models/", 1)[1].split(":", 1)[0]
        self.request.stream = ":streamGenerateContent" in p
        config = doc.get("generationConfig")
        if isinstance(config, dict):
            self.request.max_output_tokens = _int(config.get("maxOutputTokens"))

    def parse_request(self, body: bytes) -> Any:
        request = super().parse_request(body)
        if request.model is None:  # a GET or an empty body still names the model
            self.read_request({})
        return request

    def read_response(self, doc: dict[str, Any]) -> None:
        u = doc.get("usageMetadata")
        if isinstance(u, dict):
            self.usage.merge(Usage(
                input_tokens=_int(u.get("promptTokenCount")),
                output_tokens=(_int(u.get("candidatesTokenCount")) or 0)
                + (_int(u.get("thoughtsTokenCount")) or 0)
                if self.request.operation != "embeddings" else 0,
                cache_read_input_tokens=_int(u.get("cachedContentTokenCount")),
                reasoning_output_tokens=_int(u.get("thoughtsTokenCount"))))
        self.usage.merge(Usage(
            response_model=doc["modelVersion"] if isinstance(doc.get("modelVersion"), str)
            else None,
            response_id=doc["responseId"] if isinstance(doc.get("responseId"), str) else None))

    def finish(self) -> Usage:
        if not self.streaming and self._json.lstrip().startswith(b"["):
            try:
                docs = json.loads(bytes(self._json))
            except ValueError:
                docs = []
            for doc in docs if isinstance(docs, list) else []:
                if isinstance(doc, dict):
                    self.read_response(doc)
            return self.usage
        return super().finish()

    def error_body(self, status: int, message: str) -> tuple[bytes, str]:
        return json.dumps({"error": {"code": status, "message": message, "status":
                                     "RESOURCE_EXHAUSTED" if status == 429
                                     else "PERMISSION_DENIED"}}).encode(), "application/json"
