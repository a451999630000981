"""What a policy decision that refuses a request carries."""

from __future__ import annotations


class Refusal(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None,
                 body: bytes | None = None, content_type: str = "text/plain") -> None:
        super().__init__(message)
        self.status, self.message = status, message
        self.headers = headers or {}
        self.body, self.content_type = body, content_type
