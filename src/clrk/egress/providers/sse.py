"""Incremental readers of a streamed answer body: a Server-Sent Events parser (the
WHATWG event-stream format), and a JSON body kept until its end to be rewritten whole."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

MAX_EVENT = 4 << 20  # an event longer than this is dropped, not buffered forever


@dataclass
class EventStream:
    _buffer: bytearray = field(default_factory=bytearray)
    _event: str = ""
    _data: list[str] = field(default_factory=list)
    _size: int = 0

    def feed(self, chunk: bytes) -> Iterator[tuple[str, str]]:
        self._buffer += chunk
        while True:
            cut = self._buffer.find(b"\n")
            if cut < 0:
                if len(self._buffer) > MAX_EVENT:
                    self._buffer.clear()
                return
            line = bytes(self._buffer[:cut]).rstrip(b"\r").decode("utf-8", "replace")
            del self._buffer[:cut + 1]
            yield from self._line(line)

    def read(self, chunk: bytes, end: bool) -> list[tuple[str, str]]:
        """The events ``chunk`` completes, and at the body's end whatever is left."""
        events = list(self.feed(chunk))
        return events + list(self.flush()) if end else events

    def flush(self) -> Iterator[tuple[str, str]]:
        if self._buffer:
            line = bytes(self._buffer).rstrip(b"\r").decode("utf-8", "replace")
            self._buffer.clear()
            yield from self._line(line)
        yield from self._line("")

    def _line(self, line: str) -> Iterator[tuple[str, str]]:
        if not line:
            if self._data:
                yield self._event or "message", "\n".join(self._data)
            self._event, self._data, self._size = "", [], 0
            return
        if line.startswith(":"):
            return
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            self._event = value
        elif name == "data" and self._size + len(value) <= MAX_EVENT:
            self._data.append(value)
            self._size += len(value)


NOT_JSON = object()


@dataclass
class WholeJson:
    """A JSON body rewritten whole: its chunks kept until the end."""
    _buffer: bytearray = field(default_factory=bytearray)

    def feed(self, chunk: bytes, end: bool) -> tuple[bytes, Any] | None:
        """None until the end; then the body and its document (NOT_JSON if it is not
        JSON: the body is then passed on as it came)."""
        self._buffer += chunk
        if not end:
            return None
        raw = bytes(self._buffer)
        try:
            return raw, json.loads(raw)
        except ValueError:
            return raw, NOT_JSON
