"""Scrubbing injected credentials from answers where Envoy serves a route alone (the
metered provider calls, EgressL4Routes with a header credential), so those paths stay
free of Python: the same masking as clrk.egress.scrub, in Lua.

The patterns (the value's forms, computed by clrk.egress.scrub) come from files the
worker writes, one per line: the metered chain's Lua filter reads them from the meter
file with the credential it injects and keeps them in the request's dynamic metadata;
an EgressL4Route's chain reads its credential's scrub file when the answer comes (that
file keeps the forms of the value a new one replaced, which Envoy may still be
injecting; carrying the patterns from the request would cost a second Lua call per
request). The answer's headers are scrubbed before they go on; its body as it streams:
each chunk is masked in place (same length, so the content-length already sent stays
true), and a tail that could begin a match is held back into the next chunk (or
appended to the last one). How many matches were masked goes to the dynamic metadata
``clrk:scrubbed``, which the access log carries to the span (``clrk.egress.scrubbed``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from clrk.egress.scrub import MARKER

COUNT = "%DYNAMIC_METADATA(clrk:scrubbed)%"  # for the access logs
_T = "type.googleapis.com/envoy.extensions"

# Defines scrub_response(handle, patterns_text); the metering filter's Lua includes it.
FUNCTIONS = """
local SCRUB_PARSED, SCRUB_PARSED_COUNT = {}, 0
local SCRUB_NONE = {}  -- no spans (never written to)

local function scrub_patterns(text)
  local pats = SCRUB_PARSED[text]
  if pats ~= nil then return pats end
  pats = {firsts = {}}
  for line in string.gmatch(text, "[^\\n]+") do
    pats[#pats + 1] = line
    pats.firsts[#pats] = string.sub(line, 1, 1)
  end
  if SCRUB_PARSED_COUNT >= 64 then SCRUB_PARSED, SCRUB_PARSED_COUNT = {}, 0 end
  SCRUB_PARSED[text] = pats
  SCRUB_PARSED_COUNT = SCRUB_PARSED_COUNT + 1
  return pats
end

local function scrub_mask(n)
  if n < MARKER_LENGTH then return string.rep("*", n) end
  return MARKER .. string.rep("*", n - MARKER_LENGTH)
end

-- Where the patterns occur: merged {start, stop} pairs, 0-based, stop exclusive.
local function scrub_spans(data, pats)
  local found = nil
  for i = 1, #pats do
    local p = pats[i]
    local s = string.find(data, p, 1, true)
    while s ~= nil do
      found = found or {}
      found[#found + 1] = {s - 1, s - 1 + #p}
      s = string.find(data, p, s + 1, true)
    end
  end
  if found == nil then return SCRUB_NONE end
  table.sort(found, function(a, b) return a[1] < b[1] end)
  local merged = {}
  for _, span in ipairs(found) do
    local last = merged[#merged]
    if last ~= nil and span[1] < last[2] then
      if span[2] > last[2] then last[2] = span[2] end
    else
      merged[#merged + 1] = {span[1], span[2]}
    end
  end
  return merged
end

-- The longest tail of data that begins a pattern without completing it.
local function scrub_partial(data, pats)
  local best, n, firsts = 0, #data, pats.firsts
  for i = 1, #pats do
    local p = pats[i]
    local start = n - #p + 2
    if start < 1 then start = 1 end
    local first = firsts[i]
    local at = string.find(data, first, start, true)
    while at ~= nil and n - at + 1 > best do
      if string.sub(p, 1, n - at + 1) == string.sub(data, at) then
        best = n - at + 1
        break
      end
      at = string.find(data, first, at + 1, true)
    end
  end
  return best
end

-- data[0:cut] with the spans (and its first carry bytes) masked.
local function scrub_masked(data, spans, carry, cut)
  local out, at = {}, 0
  local function piece(start, stop)
    if start < at then start = at end
    if stop > cut then stop = cut end
    if start >= cut or stop <= start then return end
    out[#out + 1] = string.sub(data, at + 1, start)
    out[#out + 1] = scrub_mask(stop - start)
    at = stop
  end
  if carry > 0 then piece(0, carry) end
  for _, span in ipairs(spans) do piece(span[1], span[2]) end
  out[#out + 1] = string.sub(data, at + 1, cut)
  return table.concat(out)
end

-- One step of the stream: what goes out now, and what is held back.
local function scrub_step(state, data, final)
  local spans = scrub_spans(data, state.pats)
  local cut = #data
  if not final then cut = cut - scrub_partial(data, state.pats) end
  local carry = state.carry
  if #spans == 0 and carry == 0 and cut == #data then return data, "" end
  local after = carry - cut
  if after < 0 then after = 0 end
  for _, span in ipairs(spans) do
    if span[1] < cut and span[1] >= carry then state.count = state.count + 1 end
    if span[1] < cut and cut < span[2] and span[2] - cut > after then after = span[2] - cut end
  end
  state.carry = after
  local out
  if #spans == 0 and carry == 0 then
    out = string.sub(data, 1, cut)
  else
    out = scrub_masked(data, spans, carry, cut)
  end
  return out, string.sub(data, cut + 1)
end

local function scrub_headers(headers, state)
  local values = {}
  for _, value in pairs(headers) do values[#values + 1] = value end
  if #scrub_spans(table.concat(values, "\\n"), state.pats) == 0 then return end
  local by_key, order, dirty = {}, {}, {}
  for key, value in pairs(headers) do
    if by_key[key] == nil then
      by_key[key] = {}
      order[#order + 1] = key
    end
    local spans = scrub_spans(value, state.pats)
    if #spans > 0 and string.sub(key, 1, 1) ~= ":" then
      state.count = state.count + #spans
      dirty[key] = true
      value = scrub_masked(value, spans, 0, #value)
    end
    table.insert(by_key[key], value)
  end
  for _, key in ipairs(order) do
    if dirty[key] then
      headers:remove(key)
      for _, value in ipairs(by_key[key]) do headers:add(key, value) end
    end
  end
end

function scrub_response(handle, text)
  local pats = scrub_patterns(text)
  if #pats == 0 then return end
  local state = {pats = pats, carry = 0, count = 0}
  scrub_headers(handle:headers(), state)
  local held, last, last_out = "", nil, nil
  for chunk in handle:bodyChunks() do
    local bytes = chunk:getBytes(0, chunk:length())
    local out
    if held == "" then
      out, held = scrub_step(state, bytes, false)
    else
      out, held = scrub_step(state, held .. bytes, false)
    end
    if out ~= bytes then chunk:setBytes(out) end
    last, last_out = chunk, out
  end
  if #held > 0 then
    local out = scrub_step(state, held, true)
    -- The stream ended with the last chunk: what was held goes at its end.
    if last ~= nil then pcall(function() last:setBytes(last_out .. out) end) end
  end
  if state.count > 0 then
    handle:streamInfo():dynamicMetadata():set("clrk", "scrubbed", state.count)
  end
end
"""


def functions() -> str:
    return (f"local MARKER = {json.dumps(MARKER.decode())}\n"
            f"local MARKER_LENGTH = {len(MARKER)}\n" + FUNCTIONS)


NATIVE = """
local PATTERNS = {patterns}

function envoy_on_response(handle)
  local file = io.open(PATTERNS, "r")
  if file == nil then return end
  local text = file:read("*a")
  file:close()
  if text ~= nil and text ~= "" then scrub_response(handle, text) end
end
"""


def native_filter(patterns: Path) -> dict[str, Any]:
    """The Lua filter of a chain Envoy serves alone with a credential it injects:
    ``patterns`` is the file of that credential's forms."""
    source = functions() + NATIVE.format(patterns=json.dumps(str(patterns)))
    return {"name": "envoy.filters.http.lua", "typed_config": {
        "@type": f"{_T}.filters.http.lua.v3.Lua",
        "default_source_code": {"inline_string": source}}}


def pattern_text(patterns: tuple[bytes, ...]) -> str:
    """A patterns file: one per line (a form holding a line break cannot be read back
    and is left out; no header value can hold one)."""
    return "".join(p.decode() + "\n" for p in patterns if b"\n" not in p and b"\r" not in p)
