"""Credentials the gateway injects must never come back to the agent: an upstream that
echoes the request (debug endpoints, error messages quoting it, httpbin-like services)
would hand it the value the sandbox was never given. Every answer to a request that
carried an injected value is scrubbed of it, and of its common encodings, before the
sandbox sees it.

What is looked for (``forms``): the value itself, its URL encodings (``%XX`` upper and
lower case, ``+`` for spaces), its JSON string escape, its base64 (standard and
URL-safe, padded and not) and the aligned cores of that base64 at the three byte
offsets, which find the value inside a larger base64 blob (e.g. a base64-encoded
request echoed whole). A match is masked in place with a mask of the same length
(``[redacted]`` then ``*``), so a ``content-length`` already sent stays true; matches
that overlap are masked together.

``Scrubber`` does this to a stream: a value split across two chunks is still caught,
because the tail of a chunk that could begin a match is held back until the next
chunk (or the end) shows whether it does. Only such a tail is held, so an SSE event
that ends a chunk goes out at once. Values shorter than ``MIN_LENGTH`` bytes are not
looked for: they would mangle ordinary text, and are no secret worth the name.

The Envoy-alone paths do the same in Lua (clrk.egress.envoy.scrubbing) with the
patterns computed here.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import quote, quote_plus

MARKER = b"[redacted]"
_LOWER_ESCAPES = re.compile(rb"%[0-9A-F]{2}")  # %2F -> %2f, the value's own letters kept
MIN_LENGTH = 6


def mask(length: int) -> bytes:
    """The same number of bytes: the marker (when it fits) padded with ``*``."""
    if length < len(MARKER):
        return b"*" * length
    return MARKER + b"*" * (length - len(MARKER))


def _b64_cores(raw: bytes) -> list[bytes]:
    """The base64 characters that depend on ``raw`` alone, wherever it starts within a
    larger encoded blob (at offset 0, 1 or 2 modulo 3), in both alphabets."""
    out = []
    for offset in range(3):
        padded = b"\0" * offset + raw
        whole = len(padded) // 3 * 3  # only complete groups: the rest depends on what follows
        core = base64.b64encode(padded[:whole])[(8 * offset + 5) // 6:]
        out += [core, core.replace(b"+", b"-").replace(b"/", b"_")]
    return out


def forms(value: str) -> list[bytes]:
    """Every form of ``value`` scrubbed from answers, longest first, without
    duplicates (empty when the value is too short to be looked for)."""
    raw = value.encode()
    if len(raw) < MIN_LENGTH:
        return []
    found = [raw, quote(value, safe="").encode(), quote_plus(value, safe="").encode(),
             json.dumps(value)[1:-1].encode(), json.dumps(value, ensure_ascii=False)[1:-1]
             .encode()]
    escaped = found[1:3]
    found += [f.lower() for f in escaped if b"%" in f]  # an encoder that lowercases all
    found += [_LOWER_ESCAPES.sub(lambda m: m.group(0).lower(), f) for f in escaped]
    for encoded in (base64.b64encode(raw), base64.urlsafe_b64encode(raw)):
        found += [encoded, encoded.rstrip(b"=")]
    found += _b64_cores(raw)
    unique = {f for f in found if len(f) >= MIN_LENGTH}
    return sorted(unique, key=lambda f: (-len(f), f))


@dataclass(frozen=True)
class Patterns:
    """The forms of a request's injected values."""
    items: tuple[bytes, ...] = ()

    @classmethod
    def of(cls, values: Iterable[str]) -> Patterns:
        unique: set[bytes] = set()
        for value in values:
            unique.update(forms(value))
        return cls(tuple(sorted(unique, key=lambda f: (-len(f), f))))

    def __bool__(self) -> bool:
        return bool(self.items)

    def spans(self, data: bytes) -> list[tuple[int, int]]:
        """Where the patterns occur in ``data``, overlapping ones merged, in order."""
        found = []
        for pattern in self.items:
            at = data.find(pattern)
            while at >= 0:
                found.append((at, at + len(pattern)))
                at = data.find(pattern, at + 1)
        merged: list[tuple[int, int]] = []
        for start, end in sorted(found):
            if merged and start < merged[-1][1]:
                merged[-1] = (merged[-1][0], max(merged[-1][1], end))
            else:
                merged.append((start, end))
        return merged

    def partial(self, data: bytes) -> int:
        """The length of the longest tail of ``data`` that begins some pattern without
        completing it: what a stream must hold back until more arrives."""
        best = 0
        for pattern in self.items:
            # Tails shorter than the pattern, from the longest; each starts with its
            # first byte, so only those positions are tried.
            at = data.find(pattern[:1], max(0, len(data) - len(pattern) + 1))
            while at >= 0 and len(data) - at > best:
                if pattern.startswith(data[at:]):
                    best = len(data) - at
                    break
                at = data.find(pattern[:1], at + 1)
        return best

    def scrub(self, data: bytes) -> tuple[bytes, int]:
        """``data`` with every occurrence masked, and how many (merged) were found."""
        spans = self.spans(data)
        return _masked(data, spans, 0, len(data)), len(spans)

    def scrub_text(self, text: str) -> tuple[str, int]:
        out, count = self.scrub(text.encode())
        return (out.decode("utf-8", "replace") if count else text), count


def _masked(data: bytes, spans: list[tuple[int, int]], carry: int, end: int) -> bytes:
    """``data[:end]`` with ``spans`` (and its first ``carry`` bytes) masked."""
    out = bytearray()
    at = 0
    for start, stop in ([(0, carry)] if carry else []) + spans:
        start, stop = max(start, at), min(stop, end)
        if start >= end:
            break
        if stop <= start:
            continue
        out += data[at:start] + mask(stop - start)
        at = stop
    out += data[at:end]
    return bytes(out)


@dataclass
class Scrubber:
    """Scrubs one answer as it streams (see the module's docstring)."""
    patterns: Patterns
    count: int = 0  # matches masked so far
    _held: bytes = b""
    _carry: int = 0  # bytes at the start of what is held that a match already covered

    def feed(self, chunk: bytes, end: bool) -> bytes:
        """What of the answer can go to the agent now (the last call, ``end``, gives
        everything that is left)."""
        if not self.patterns:
            return chunk
        data = self._held + chunk
        spans = self.patterns.spans(data)
        cut = len(data) if end else len(data) - self.patterns.partial(data)
        # A match that begins before the cut is counted now; one wholly after it will
        # be found again with the next chunk.
        self.count += sum(1 for start, _ in spans if start < cut and start >= self._carry)
        out = _masked(data, spans, self._carry, cut)
        self._carry = max([0] + [stop - cut for start, stop in spans
                                 if start < cut < stop] + [self._carry - cut])
        self._held = data[cut:]
        return out
