"""Scrubbing injected credentials from answers (clrk.egress.scrub): the forms looked
for, masks of the same length, a value split across chunks, and the answer's headers
as the policy service rewrites them."""

from __future__ import annotations

import base64
import json
import random
import re
import stat
from pathlib import Path
from urllib.parse import quote, urlencode

import pytest
from envoy.config.core.v3 import base_pb2
from envoy.service.ext_proc.v3 import external_processor_pb2 as pb

from clrk.egress.envoy.scrubbing import pattern_text
from clrk.egress.policy.exchange import _scrubbed_headers
from clrk.egress.scrub import MARKER, MIN_LENGTH, Patterns, Scrubber, forms, mask
from clrk.egress.secret_files import SecretFiles

KEY = "sk-ant-test-3f9c1e7d5b2a4c68"
ODD = "k3y/with+odd=chars é\"x\\"  # encodes differently in every form


def masked(data: bytes) -> bytes:
    """What the masks leave of ``data``: every mask as one ``#``."""
    return re.sub(rb"(\[redacted\])?\*+|\[redacted\]", b"#", data)


def test_masks_keep_the_length() -> None:
    assert mask(4) == b"****"
    assert mask(10) == MARKER
    assert mask(14) == MARKER + b"****"
    out, count = Patterns.of([KEY]).scrub(f"key={KEY}; again {KEY}".encode())
    assert count == 2 and len(out) == len(f"key={KEY}; again {KEY}")
    assert out == f"key={mask(len(KEY)).decode()}; again {mask(len(KEY)).decode()}".encode()


@pytest.mark.parametrize("value", [KEY, ODD])
def test_every_common_encoding_is_found(value: str) -> None:
    raw = value.encode()
    lower_hex = re.sub(r"%[0-9A-F]{2}", lambda m: m.group(0).lower(), quote(value, safe=""))
    encoded = [raw, quote(value, safe="").encode(), quote(value, safe="").lower().encode(),
               lower_hex.encode(),
               urlencode({"k": value}).encode()[2:], json.dumps(value).encode()[1:-1],
               base64.b64encode(raw), base64.urlsafe_b64encode(raw),
               base64.b64encode(raw).rstrip(b"=")]
    patterns = Patterns.of([value])
    for form in encoded:
        text = b"before " + form + b" after"
        out, count = patterns.scrub(text)
        assert count == 1, form
        assert masked(out) == b"before # after", (form, out)


@pytest.mark.parametrize("alphabet", ["standard", "urlsafe"])
@pytest.mark.parametrize("before", range(7))
def test_the_value_is_found_inside_a_larger_base64_blob(alphabet: str, before: int) -> None:
    """At every byte offset, in both alphabets: what is left of the blob no longer
    decodes to the value (at most a partial first or last byte of it survives)."""
    rng = random.Random(before)
    prefix = bytes(rng.randrange(256) for _ in range(before))
    suffix = bytes(rng.randrange(256) for _ in range(5))
    encode = base64.b64encode if alphabet == "standard" else base64.urlsafe_b64encode
    blob = encode(prefix + KEY.encode() + suffix)
    out, count = Patterns.of([KEY]).scrub(b'{"echo": "' + blob + b'"}')
    assert count >= 1 and len(out) == len(blob) + 12
    body = out[10:-2]
    refilled = re.sub(rb"[^A-Za-z0-9+/_=-]", b"A", body)
    decode = base64.b64decode if alphabet == "standard" else base64.urlsafe_b64decode
    leaked = decode(refilled)
    assert KEY.encode()[1:-1] not in leaked
    assert not any(KEY.encode()[i:i + 4] in leaked for i in range(1, len(KEY) - 4))


def test_short_values_are_not_looked_for() -> None:
    assert forms("x" * (MIN_LENGTH - 1)) == []
    assert not Patterns.of(["abc"])
    scrubber = Scrubber(Patterns.of(["abc"]))
    assert scrubber.feed(b"abc", True) == b"abc" and scrubber.count == 0


def test_forms_are_unique_and_longest_first() -> None:
    found = forms(ODD)
    assert len(found) == len(set(found))
    assert [len(f) for f in found] == sorted((len(f) for f in found), reverse=True)


def _stream(patterns: Patterns, pieces: list[bytes]) -> tuple[bytes, int, list[bytes]]:
    scrubber = Scrubber(patterns)
    out = [scrubber.feed(p, i == len(pieces) - 1) for i, p in enumerate(pieces)]
    return b"".join(out), scrubber.count, out


def test_a_value_split_across_chunks_is_caught_at_every_boundary() -> None:
    text = (f'{{"headers": {{"X-Api-Key": "{KEY}"}}, "b64": '
            f'"{base64.b64encode(KEY.encode()).decode()}", "tail": "{KEY[:5]}"}}').encode()
    patterns = Patterns.of([KEY])
    whole, count = patterns.scrub(text)
    assert count == 2  # the tail's first five bytes alone are no match
    for cut in range(len(text) + 1):
        out, n, _ = _stream(patterns, [text[:cut], text[cut:]])
        assert (out, n) == (whole, 2), cut
    for first in range(0, len(text), 7):
        for second in range(first, len(text), 11):
            out, n, _ = _stream(patterns, [text[:first], text[first:second], text[second:]])
            assert (out, n) == (whole, 2), (first, second)


def test_byte_by_byte() -> None:
    text = f"data: {KEY}{KEY}\n\n".encode()
    patterns = Patterns.of([KEY])
    out, count, _ = _stream(patterns, [bytes([b]) for b in text] + [b""])
    assert out == patterns.scrub(text)[0] and count == 2  # adjacent: two masks


def test_only_a_tail_that_could_begin_a_match_is_held_back() -> None:
    scrubber = Scrubber(Patterns.of([KEY]))
    event = b'event: message_delta\ndata: {"usage": {"output_tokens": 24}}\n\n'
    assert scrubber.feed(event, False) == event  # an SSE event goes out at once
    assert scrubber.feed(b"prefix sk-an", False) == b"prefix "
    assert scrubber.feed(b"t-test-3f9c1e7d5b2a4c68 and", False) == \
        mask(len(KEY)) + b" and"
    assert scrubber.feed(b" sk", False) == b" "
    assert scrubber.feed(b"", True) == b"sk"  # the end: what was held goes out as is
    assert scrubber.count == 1


def test_overlapping_forms_are_masked_together() -> None:
    """A match that straddles the cut is masked on both sides of it."""
    value = "AAAABBBBCCCC"
    # The value's base64 core at offset 0 is a prefix of its padded base64: whichever
    # is found, the union is masked.
    blob = base64.b64encode(value.encode())
    patterns = Patterns.of([value])
    for cut in range(len(blob) + 1):
        out, count, _ = _stream(patterns, [blob[:cut], blob[cut:]])
        assert out == mask(len(blob)) and count == 1, (cut, out)


def test_the_patterns_file_for_lua() -> None:
    patterns = Patterns.of([KEY, "line\nbreak-value"])
    lines = pattern_text(patterns.items).splitlines()
    assert KEY in lines and base64.b64encode(KEY.encode()).decode() in lines
    assert not any(ln == "line" or ln == "break-value" for ln in lines)
    assert all(ln.encode() in patterns.items for ln in lines)


def _headers(*pairs: tuple[str, str]) -> pb.HttpHeaders:
    return pb.HttpHeaders(headers=base_pb2.HeaderMap(headers=[
        base_pb2.HeaderValue(key=k, raw_value=v.encode()) for k, v in pairs]))


def test_the_policy_service_rewrites_only_the_headers_that_hold_a_value() -> None:
    patterns = Patterns.of([KEY])
    msg = _headers((":status", "200"), ("content-type", "application/json"),
                   ("x-echo", f"Bearer {KEY}"), ("set-cookie", "a=1"),
                   ("set-cookie", f"b={base64.b64encode(KEY.encode()).decode()}"))
    mutation, count = _scrubbed_headers(msg, patterns)
    assert mutation is not None and count == 2
    assert list(mutation.remove_headers) == ["set-cookie", "x-echo"]
    got = [(h.header.key, h.header.raw_value) for h in mutation.set_headers]
    assert got[0] == ("set-cookie", b"a=1")  # every value again, in order
    assert got[1][0] == "set-cookie" and KEY.encode() not in base64.b64decode(
        got[1][1][2:].replace(b"[redacted]", b"AAAAAAAAAA").replace(b"*", b"A") + b"==")
    assert got[2] == ("x-echo", b"Bearer " + mask(len(KEY)))
    assert all(h.append_action == base_pb2.HeaderValueOption.APPEND_IF_EXISTS_OR_ADD
               for h in mutation.set_headers)
    assert _scrubbed_headers(_headers(("x-other", "nothing")), patterns) == (None, 0)


def test_a_scrub_file_keeps_the_value_it_replaces(tmp_path: Path) -> None:
    """Envoy loads a new SDS file a moment after it changes and may inject the old
    value until then: its answers are still scrubbed of it."""
    files = SecretFiles(tmp_path)
    try:
        old, new = "ghp-old-value-1234", "ghp-new-value-5678"
        path = files.write_scrub("gh", old)
        assert old in path.read_text().splitlines()
        for _ in range(2):  # written again (every configuration change): still both
            lines = files.write_scrub("gh", new).read_text().splitlines()
            assert new in lines and old in lines
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        lines = files.write_scrub("gh", "ghp-third-value-9").read_text().splitlines()
        assert old not in lines and new in lines
    finally:
        files.remove()
