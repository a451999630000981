"""The filters of a provider host's chain (the hosts of AIProviderRoutes and MCPRoutes),
which let Envoy serve and meter most LLM calls alone, at C++ speed:

1. json_to_metadata reads the request's ``model`` and ``stream``;
2. a Lua filter decides, per request, who handles it. Envoy alone, when the host's
   meter file exists (the worker writes one while the host's route needs nothing of
   Python: see clrk.egress.metered) and the call is not a stream, an embeddings call
   or a body Envoy could not read: it injects the file's credential header and, when
   the agent sent none, a ``traceparent`` in the trace of the sandbox's execution (its
   address's trace file). Anything else is marked ``x-clrk-python`` for the policy
   service;
3. ext_proc (the policy service) runs on marked requests only;
4. json_to_metadata reads the usage of the JSON answers of the others, and the access
   log carries it, with the request's model and the Lua filter's decisions, to the
   worker, which writes the call's span;
5. on the way back, the Lua filter scrubs the answers of the calls Envoy served of
   the credential it injected (clrk.egress.envoy.scrubbing: its forms are read from
   the meter file with it, and kept in the request's dynamic metadata, so the answer
   is scrubbed of what was injected even if the file changes meanwhile); the policy
   service scrubs the others.

The decision is in files, not in the chain, so a policy change that moves a host
between Envoy and Python rewrites no listener and drains no connection.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clrk.egress.envoy import scrubbing
from clrk.egress.metered import METERED_PROVIDERS
from clrk.egress.providers import codec_for

PYTHON_HEADER = "x-clrk-python"  # set by the Lua filter: the policy service handles it
NAMESPACE = "clrk"  # the Lua filter's decisions
REQUEST = "clrk.request"  # the request body's model and stream
USAGE = "clrk.usage"  # the JSON answer's usage, keyed by path
SCRUB = "clrk.scrub"  # the forms of the injected credential (never logged)
# Paths whose calls always go to the policy service: streams (their usage is in SSE
# events) and embeddings (answers too large to hold whole in Envoy).
TO_PYTHON = (":streamGenerateContent", "/embeddings", ":embedContent", ":batchEmbedContents")
USAGE_PATHS = tuple(sorted({p for provider in METERED_PROVIDERS
                            for p in codec_for(provider, "/").USAGE_PATHS}))
_T = "type.googleapis.com/envoy.extensions"
_JSON = "(?i)application/json(\\s*;.*)?"
_REQUEST_TYPES = "(?i)(application/json|text/plain|application/x-www-form-urlencoded)(\\s*;.*)?"

LOG_FIELDS = {
    "route": f"%DYNAMIC_METADATA({NAMESPACE}:route)%",
    "provider": f"%DYNAMIC_METADATA({NAMESPACE}:provider)%",
    "injected": f"%DYNAMIC_METADATA({NAMESPACE}:injected)%",
    "span": f"%DYNAMIC_METADATA({NAMESPACE}:span)%",
    "request": f"%DYNAMIC_METADATA({REQUEST})%",
    "usage": f"%DYNAMIC_METADATA({USAGE})%",
    "response_type": "%RESP(CONTENT-TYPE)%",
    "scrubbed": scrubbing.COUNT,
    "decision": "allow",
}


# The access log has the calls Envoy served alone: the policy service records the
# others (and their lines could hold what it injected, e.g. a query credential).
LOG_FILTER = {"metadata_filter": {
    "matcher": {"filter": NAMESPACE, "path": [{"key": "python"}],
                "value": {"string_match": {"exact": "0"}}},  # never: "1" when marked
    "match_if_key_not_found": True}}


@dataclass(frozen=True)
class Metering:
    """Where a provider chain's Lua filter reads its decisions and Envoy logs the calls
    it served alone."""
    meter_file: Path  # this host's: route, provider, credential header and value
    traces: Path  # a file per sandbox address: the trace id of its execution
    access_log: Path


LUA = """
local METER = {meter}
local TRACES = {traces}
local TO_PYTHON = {{{to_python}}}
math.randomseed(os.time() + tonumber(string.match(tostring({{}}), "0x(%x+)") or "0", 16))

local function python(headers, meta)
  headers:replace("{header}", "1")
  meta:set("{ns}", "python", "1")
end

function envoy_on_request(handle)
  local headers = handle:headers()
  local info = handle:streamInfo()
  local meta = info:dynamicMetadata()
  local ours = {{}}
  for key, _ in pairs(headers) do
    if string.sub(key, 1, 7) == "x-clrk-" then ours[#ours + 1] = key end
  end
  for _, key in ipairs(ours) do headers:remove(key) end
  local body = meta:get("{request}")
  if body ~= nil and (body["stream"] == true or body["unread"] == true) then
    return python(headers, meta)
  end
  local path = headers:get(":path") or ""
  for _, marker in ipairs(TO_PYTHON) do
    if string.find(path, marker, 1, true) then return python(headers, meta) end
  end
  local file = io.open(METER, "r")
  if file == nil then return python(headers, meta) end
  local route, provider, header, value = file:read("*l", "*l", "*l", "*l")
  local patterns = file:read("*a")
  file:close()
  if route == nil or provider == nil then return python(headers, meta) end
  meta:set("{ns}", "route", route)
  meta:set("{ns}", "provider", provider)
  if header ~= nil and header ~= "" then
    headers:replace(header, value or "")
    meta:set("{ns}", "injected", header)
    -- A compressed answer could not be scrubbed of it.
    headers:remove("accept-encoding")
  end
  if patterns ~= nil and patterns ~= "" then meta:set("{scrub}", "patterns", patterns) end
  local span = string.format("%08x%08x", math.random(0, 0x7fffffff),
                             math.random(1, 0x7fffffff))
  meta:set("{ns}", "span", span)
  if headers:get("traceparent") == nil then
    local address = string.match(info:downstreamRemoteAddress(), "^%[?(.-)%]?:%d+$") or ""
    address = string.gsub(address, "^::ffff:", "")
    local traces = io.open(TRACES .. "/" .. address, "r")
    if traces ~= nil then
      local trace = traces:read("*l")
      traces:close()
      if trace ~= nil and string.len(trace) == 32 then
        headers:replace("traceparent", "00-" .. trace .. "-" .. span .. "-01")
      end
    end
  end
end

function envoy_on_response(handle)
  local mine = handle:streamInfo():dynamicMetadata():get("{scrub}")
  if mine == nil or mine["patterns"] == nil then return end
  scrub_response(handle, mine["patterns"])
end
"""


def lua_source(metering: Metering) -> str:
    return scrubbing.functions() + LUA.format(
        meter=json.dumps(str(metering.meter_file)), traces=json.dumps(str(metering.traces)),
        to_python=", ".join(json.dumps(m) for m in TO_PYTHON), header=PYTHON_HEADER,
        ns=NAMESPACE, request=REQUEST, scrub=SCRUB)


def _rule(path: str, namespace: str, **when: Any) -> dict[str, Any]:
    return {"selectors": [{"key": k} for k in path.split(".")],
            "on_present": {"metadata_namespace": namespace, "key": path,
                           "type": "PROTOBUF_VALUE"}, **when}


def _regex(pattern: str) -> dict[str, Any]:
    return {"google_re2": {}, "regex": pattern}


def _when_marked(skip: bool, extension: dict[str, Any]) -> dict[str, Any]:
    """The filter runs only on requests the Lua filter marked for the policy service
    (``skip`` False), or only on the others (``skip`` True)."""
    predicate: dict[str, Any] = {"single_predicate": {
        "input": {"name": "marked", "typed_config": {
            "@type": "type.googleapis.com/envoy.type.matcher.v3.HttpRequestHeaderMatchInput",
            "header_name": PYTHON_HEADER}},
        "value_match": {"exact": "1"}}}
    if not skip:
        predicate = {"not_matcher": predicate}
    return {"name": f"{extension['name']} ({'unmarked' if skip else 'marked'})",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.common.matching.v3"
                         ".ExtensionWithMatcher",
                "extension_config": extension,
                "xds_matcher": {"matcher_list": {"matchers": [{
                    "predicate": predicate,
                    "on_match": {"action": {"name": "skip", "typed_config": {
                        "@type": f"{_T}.filters.common.matcher.action.v3.SkipFilter"}}}}]}}}}


def provider_filters(metering: Metering, ext_proc: dict[str, Any]) -> list[dict[str, Any]]:
    """The HTTP filters before the router on a provider host's chain."""
    json_type = f"{_T}.filters.http.json_to_metadata.v3.JsonToMetadata"
    return [
        {"name": "envoy.filters.http.json_to_metadata", "typed_config": {
            "@type": json_type, "request_rules": {
                # A body Envoy cannot read (not JSON, or of another content type) is
                # "unread": the policy service reads it.
                "rules": [_rule("model", REQUEST), _rule(
                    "stream", REQUEST, on_error={"metadata_namespace": REQUEST,
                                                 "key": "unread", "value": True})],
                "allow_content_types_regex": _regex(_REQUEST_TYPES),
                "allow_empty_content_type": True}}},
        {"name": "envoy.filters.http.lua", "typed_config": {
            "@type": f"{_T}.filters.http.lua.v3.Lua",
            "default_source_code": {"inline_string": lua_source(metering)}}},
        _when_marked(False, ext_proc),
        _when_marked(True, {"name": "envoy.filters.http.json_to_metadata", "typed_config": {
            "@type": json_type, "response_rules": {
                "rules": [_rule(p, USAGE) for p in USAGE_PATHS],
                "allow_content_types_regex": _regex(_JSON)}}}),
    ]
