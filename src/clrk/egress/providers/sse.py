"""An incremental Server-Sent Events parser (the WHATWG event-stream format)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

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
