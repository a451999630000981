"""One intercepted HTTP request, from its headers to the last byte of its response:
route match, deny and rate-limit decisions, token budgets, credential injection,
request rewrites, the answer scrubbed of what was injected, usage accounting and the
record. Envoy's ext_proc drives it, one gRPC stream per request."""

from __future__ import annotations

import datetime as dt
import fnmatch
import functools
import json
import logging
import random
import secrets
from dataclasses import dataclass, field
from typing import Any

from envoy.config.core.v3 import base_pb2
from envoy.extensions.filters.http.ext_proc.v3 import processing_mode_pb2 as modes
from envoy.service.ext_proc.v3 import external_processor_pb2 as pb
from envoy.type.v3 import http_status_pb2

from clrk.api.meta import parse_duration
from clrk.egress import scrub
from clrk.egress.attribution import Attribution
from clrk.egress.envoy.http import BACKEND_HEADER
from clrk.egress.policy import credentials, mcp
from clrk.egress.policy.attachments import Target
from clrk.egress.policy.limits import retry_after
from clrk.egress.policy.record import Capture, HttpRecord
from clrk.egress.policy.refusal import Refusal
from clrk.egress.policy.state import PolicyState
from clrk.egress.providers import Codec, codec_for
from clrk.egress.providers.translate import Translation, Untranslatable, supported
from clrk.egress.routing import AIRule, MCPRule, glob_or_regex
from clrk.telemetry.pricing import billed_as

log = logging.getLogger("clrk.egress.policy")
OVERWRITE = base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD
APPEND = base_pb2.HeaderValueOption.APPEND_IF_EXISTS_OR_ADD
DEFAULT_CAPTURE = 64 << 10
# The response body of a request the service injected a credential into comes to it
# (a chain without bodies would not send it), to be scrubbed.
SCRUB_BODY = modes.ProcessingMode(response_body_mode=modes.ProcessingMode.STREAMED,
                                  request_trailer_mode=modes.ProcessingMode.SKIP,
                                  response_trailer_mode=modes.ProcessingMode.SKIP)


def headers_of(msg: pb.HttpHeaders) -> dict[str, str]:
    out: dict[str, str] = {}
    for h in msg.headers.headers:
        value = h.raw_value.decode("utf-8", "replace") if h.raw_value else h.value
        key = h.key.lower()
        out[key] = f"{out[key]}, {value}" if key in out else value
    return out


@functools.lru_cache(maxsize=256)
def _patterns(values: tuple[str, ...]) -> scrub.Patterns:
    return scrub.Patterns.of(values)


def _scrubbed_headers(msg: pb.HttpHeaders, patterns: scrub.Patterns
                      ) -> tuple[pb.HeaderMutation | None, int]:
    """The answer's headers that hold a pattern, replaced (every value of such a header
    again, in order, masked where it matched), and how many matches."""
    values: dict[str, list[bytes]] = {}
    dirty: set[str] = set()
    count = 0
    for h in msg.headers.headers:
        value = h.raw_value or h.value.encode()
        if not h.key.startswith(":"):
            value, found = patterns.scrub(value)
            if found:
                count += found
                dirty.add(h.key.lower())
        values.setdefault(h.key.lower(), []).append(value)
    if not dirty:
        return None, 0
    return pb.HeaderMutation(remove_headers=sorted(dirty), set_headers=[
        base_pb2.HeaderValueOption(header=base_pb2.HeaderValue(key=key, raw_value=v),
                                   append_action=APPEND)
        for key in sorted(dirty) for v in values[key]]), count


def _mutation(set_headers: dict[str, str], remove: list[str]) -> pb.HeaderMutation:
    return pb.HeaderMutation(
        set_headers=[base_pb2.HeaderValueOption(
            header=base_pb2.HeaderValue(key=k, raw_value=v.encode()), append_action=OVERWRITE)
            for k, v in set_headers.items()],
        remove_headers=remove)


@dataclass
class Exchange:
    state: PolicyState
    gateway: str  # name in the worker's namespace
    host: str
    port: int
    fixed_route: str = ""  # "Kind/name" when the chain serves one route (EgressL4Route)
    record: HttpRecord = field(init=False)
    who: Attribution | None = None
    codec: Codec | None = None
    rule: AIRule | None = None
    route_name: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    span_id: str = field(default_factory=lambda: secrets.token_hex(8))
    tools_filter: mcp.ToolsListFilter | None = None
    route_kind: str = "AIProviderRoute"
    capture: tuple[bool, bool, int, tuple[str, ...]] | None = None
    scrubber: scrub.Scrubber | None = None  # when a credential was injected
    # A Backend whose schema is not the agent's format: the request and the answer are
    # translated, and ``upstream`` reads the usage from the Backend's own answer.
    translation: Translation | None = None
    upstream: Codec | None = None
    scrubbed: int = 0  # matches masked in the answer's headers
    finishing: bool = False
    finished: bool = False

    def __post_init__(self) -> None:
        self.record = HttpRecord(dt.datetime.now(dt.UTC), "", self.host, self.port, "",
                                 f"{self.state.namespace}/{self.gateway}")

    @property
    def doc(self) -> dict[str, Any]:
        return self.state.gateways.get(self.gateway) or {}

    @property
    def deny_all(self) -> bool:
        return bool((self.doc.get("spec") or {}).get("defaultPolicy") != "allow-all")

    # -- request -----------------------------------------------------------------------

    async def request_headers(self, msg: pb.HttpHeaders, source: str) -> pb.ProcessingResponse:
        self.headers = headers_of(msg)
        self.record.method = self.headers.get(":method", "")
        self.record.path = self.headers.get(":path", "/")
        self.record.request_headers = dict(self.headers)
        self.who = self.state.attribution.of(source.rsplit(":", 1)[0].strip("[]"))
        routes = self.state.routes.get(self.gateway)
        candidates = routes.ai_candidates(self.host) if routes else []
        if candidates:
            self.codec = codec_for(candidates[0].provider, self.record.path)
        if msg.end_of_stream or routes is None or not routes.needs_bodies(self.host):
            return await self._decide(None, "request_headers")
        return pb.ProcessingResponse(request_headers=pb.HeadersResponse())

    async def request_body(self, msg: pb.HttpBody) -> pb.ProcessingResponse:
        self.record.bytes_sent += len(msg.body)
        return await self._decide(msg.body, "request_body")

    async def _decide(self, body: bytes | None, phase: str) -> pb.ProcessingResponse:
        try:
            common = await self._admit(body)
        except Refusal as refusal:
            return self._refuse(refusal)
        except credentials.MissingCredential as err:
            return self._refuse(Refusal(503, f"credential unavailable: {err}"))
        if phase == "request_headers":
            return pb.ProcessingResponse(request_headers=pb.HeadersResponse(response=common))
        return pb.ProcessingResponse(request_body=pb.BodyResponse(response=common))

    def _targets(self, route_kind: str) -> list[Target]:
        out = [Target(route_kind, self.route_name)] if self.route_name else []
        return [*out, Target("EgressGateway", self.gateway)]

    async def _admit(self, body: bytes | None) -> pb.CommonResponse:
        state, routes = self.state, self.state.routes.get(self.gateway)
        route_kind = "AIProviderRoute"
        doc: dict[str, Any] | None = None
        if self.fixed_route:
            route_kind, _, name = self.fixed_route.partition("/")
            self._route(name)
        elif self.codec is not None:
            request = self.codec.parse_request(body or b"")
            self.record.attributes.update({
                "gen_ai.provider.name": self.codec.provider,
                "gen_ai.operation.name": request.operation,
                "gen_ai.request.stream": "true" if request.stream else "false"})
            if request.model:
                self.record.attributes["gen_ai.request.model"] = request.model
            doc = request.body
            self.rule = routes.ai_rule(self.host, self.record.path, request.model) \
                if routes else None
            if self.rule is not None:
                self._route(self.rule.route)
            elif self.deny_all:
                raise Refusal(403, f"no AIProviderRoute rule of gateway {self.gateway} "
                              f"matches {self.record.path} for model {request.model!r}")
        elif routes is not None and (rules := routes.mcp_rules(
                f"https://{self.host}{self.record.path}")):
            route_kind = "MCPRoute"
            self._admit_mcp(rules, body)
        self.route_kind = route_kind
        capture = self._capture_policy()
        if body is not None and capture[0] and self.record.request_body is None:
            self.record.request_body = Capture(capture[2], capture[3])
            if self.record.request_body.wants(self.headers.get("content-type", "")):
                self.record.request_body.add(body)
        self._deny_policy(route_kind)
        await self._rate_limits(route_kind)
        rewritten = False
        backend: dict[str, str] = {}
        if self.codec is not None and self.rule is not None:
            await self._budget(self.rule, doc)
            if doc is not None and self.codec.rewrite_request(doc):
                rewritten = True
            if self.rule.backends:
                backend, changed = self._backend(self.rule, doc)
                rewritten = rewritten or changed
        if doc is not None and self.codec is not None and self.rule is not None:
            limit = self.rule.budget.get("maxOutputTokensPerRequest")
            if limit and self.codec.request.max_output_tokens is None and \
                    self.codec.cap_output(doc, limit):
                rewritten = True
        remove_for_backend: list[str] = []
        if self.translation is not None and doc is not None:
            try:
                doc, path = self.translation.request(doc)
            except Untranslatable as err:
                raise Refusal(400, f"Backend {backend.get(BACKEND_HEADER)} speaks "
                              f"{self.translation.target}: {err}") from None
            set_for_backend, remove_for_backend = self.translation.headers()
            backend.update(set_for_backend, **{":path": path})
            rewritten = True
        new_body = json.dumps(doc, separators=(",", ":")).encode() if rewritten else None
        # A Backend's own credential (its provider's header) before the route's.
        targets = self._targets(route_kind)
        if backend:
            targets.insert(0, Target("Backend", backend[BACKEND_HEADER]))
        policies = state.policies.attached("CredentialInjectionPolicy", targets)
        # Headers that never go upstream are not signed either. A request that gets a
        # credential asks for no compression: a compressed answer could not be scrubbed.
        outgoing = {k: v for k, v in self.headers.items()
                    if not k.startswith(("x-envoy-", "x-clrk-"))
                    and not (policies and k == "accept-encoding")}
        injection = await credentials.inject(
            policies, state.secrets, self.record.method, self.host, self.record.path,
            outgoing, new_body if new_body is not None else body, state.google)
        self.record.secrets += injection.secrets
        self.record.redact.update(injection.set_headers)
        patterns = _patterns(tuple(injection.scrub))
        if patterns:
            self.scrubber = scrub.Scrubber(patterns)
        set_headers = dict(injection.set_headers)
        if injection.path is not None:
            set_headers[":path"] = injection.path
        if "traceparent" not in self.headers and self.who is not None and self.who.trace_id:
            set_headers["traceparent"] = f"00-{self.who.trace_id}-{self.span_id}-01"
        remove = [*injection.remove_headers, *(h for h in remove_for_backend if h in
                                                self.headers and h not in set_headers)]
        # Envoy obeys x-envoy-* request headers (retries, timeouts): never the agent's.
        remove += [h for h in self.headers if h.startswith(("x-envoy-", "x-clrk-"))
                   and h not in remove]
        if policies and "accept-encoding" in self.headers:
            remove.append("accept-encoding")
        set_headers.update(backend)
        for name in remove:  # the record shows the request as it went upstream
            self.record.request_headers.pop(name, None)
        self.record.request_headers.update(injection.set_headers)
        common = pb.CommonResponse(header_mutation=_mutation(set_headers, remove),
                                   clear_route_cache=bool(backend))
        if new_body is not None:
            common.body_mutation.body = new_body
            set_headers["content-length"] = str(len(new_body))
            common.header_mutation.CopyFrom(_mutation(set_headers, remove))
        return common

    def _backend(self, rule: AIRule, doc: dict[str, Any] | None
                 ) -> tuple[dict[str, str], bool]:
        """Pick one of the rule's Backends by weight; its modelRewrites apply to the
        request. Returns the header that routes there and whether the body changed."""
        choices = [(n, w) for n, w in rule.backends if w > 0] or list(rule.backends)
        name = random.choices([n for n, _ in choices], [max(w, 1) for _, w in choices])[0]
        self.record.attributes["clrk.backend"] = name
        spec = (self.state.backends.get(name) or {}).get("spec") or {}
        schema = spec.get("schema")
        source = self.codec.provider if self.codec is not None else ""
        if schema and source and schema != source:
            if not supported(source, schema):
                raise Refusal(502, f"Backend {name} speaks {schema}; requests in "
                              f"{source}'s format are not translated to it (anthropic and "
                              f"openai are, either way)")
            self.translation = Translation(source, schema)
            self.record.attributes["clrk.backend.schema"] = schema
        changed = False
        model = doc.get("model") if doc is not None else None
        for rewrite in spec.get("modelRewrites") or []:
            if isinstance(model, str) and doc is not None and \
                    fnmatch.fnmatchcase(model, rewrite["from"]):
                doc["model"] = rewrite["to"]
                self.record.attributes["clrk.backend.model"] = rewrite["to"]
                changed = True
                break
        return {BACKEND_HEADER: name}, changed

    def _admit_mcp(self, rules: list[MCPRule], body: bytes | None) -> None:
        calls = mcp.parse(body)
        if calls is None:  # the GET stream, a DELETE, or no JSON-RPC: the route's own
            self._route(rules[0].route)
            return
        first = calls[0]
        self.record.attributes["mcp.method.name"] = first.method
        if first.id is not None:
            self.record.attributes["jsonrpc.request.id"] = str(first.id)
        for call in calls:
            rule = mcp.rule_for(rules, call)
            if rule is None:
                if self.deny_all:
                    raise mcp.refuse(calls, f"no MCPRoute rule of gateway {self.gateway} "
                                     f"covers {call.method}"
                                     + (f" of tool {call.tool!r}" if call.tool else ""))
                continue
            self._route(rule.route)
            if call.method == "tools/list":
                self.tools_filter = mcp.ToolsListFilter(
                    lambda tool, rule=rule: mcp.tool_refusal(rule, tool) is None)
            if call.method != "tools/call" or call.tool is None:
                continue
            self.record.attributes.update({"gen_ai.tool.name": call.tool,
                                           "gen_ai.operation.name": "execute_tool"})
            reason = mcp.tool_refusal(rule, call.tool)
            if reason:
                raise mcp.refuse(calls, reason)
            self._tool_limits(rule, call, calls)

    def _tool_limits(self, rule: MCPRule, call: mcp.Call, calls: list[mcp.Call]) -> None:
        policy, who = rule.tool_policy, self.who
        invocation = who.invocation if who else "unattributed"
        limit = policy.get("maxCallsPerExecution")
        used = self.state.execution_tokens.used(invocation, f"{rule.name}#calls")
        if limit and used >= int(limit):
            raise mcp.refuse(calls, f"maxCallsPerExecution of MCPRoute {rule.route} "
                             f"({limit}) reached")
        agent = f"{who.agent_kind}/{who.agent_name}" if who else "unattributed"
        for i, rl in enumerate(policy.get("rateLimits") or []):
            tools = rl.get("tools") or []
            if tools and not any(glob_or_regex(p, call.tool or "") for p in tools):
                continue
            window = parse_duration(rl["window"]).total_seconds()
            wait = self.state.windows.take(f"mcp/{rule.name}/{i}/{agent}",
                                           int(rl["requests"]), window)
            if wait is not None:
                refusal = mcp.refuse(calls, f"rate limit of MCPRoute {rule.route} for "
                                     f"{call.tool!r} ({rl['requests']} per {rl['window']}) "
                                     "exceeded")
                refusal.headers["retry-after"] = retry_after(wait)
                raise refusal
        self.state.execution_tokens.add(invocation, f"{rule.name}#calls", 1)

    def _route(self, route: str) -> None:
        self.route_name = route
        self.record.attributes["clrk.route"] = f"{self.state.namespace}/{route}"

    def _capture_policy(self) -> tuple[bool, bool, int, tuple[str, ...]]:
        """(capture request, capture response, max bytes, content types), decided once
        per request by the route's LoggingPolicy, else the gateway's captureBody."""
        if self.capture is None:
            self.capture = self._decide_capture()
        return self.capture

    def _decide_capture(self) -> tuple[bool, bool, int, tuple[str, ...]]:
        spec = self.doc.get("spec") or {}
        body = ((spec.get("otlp") or {}).get("captureBody") or {})
        limit = int(body.get("maxBytes") or 0)
        types = tuple(body.get("contentTypes") or ())
        logging_policies = self.state.policies.attached("LoggingPolicy",
                                                        self._targets(self.route_kind))
        if logging_policies:
            lp = logging_policies[0]["spec"]
            self.record.redact.update(h.lower() for h in lp.get("redactHeaders") or [])
            return (bool(lp.get("captureRequest")), bool(lp.get("captureResponse")),
                    limit or DEFAULT_CAPTURE, types)
        return limit > 0, limit > 0, limit, types

    def _deny_policy(self, route_kind: str) -> None:
        for doc in self.state.policies.attached("EgressDenyPolicy", self._targets(route_kind)):
            deny = doc["spec"].get("denyResponse") or {}
            raise Refusal(int(deny.get("statusCode") or 403),
                          deny.get("message") or f"denied by EgressDenyPolicy "
                          f"{doc['metadata']['name']}")

    async def _rate_limits(self, route_kind: str) -> None:
        for doc in self.state.policies.all_attached("RateLimitPolicy",
                                                    self._targets(route_kind)):
            spec = doc["spec"]
            scope = spec.get("scope") or "PerAgent"
            who = self.who
            if scope == "PerExecution":
                key = who.invocation if who else "unattributed"
            elif scope == "PerAgent":
                key = f"{who.agent_kind}/{who.agent_name}" if who else "unattributed"
            else:
                key = self.route_name or self.gateway
            window = parse_duration(spec["window"]).total_seconds()
            # An execution runs on one worker; an agent's executions and a route's
            # requests may be on many, so their windows are the API server's.
            if scope != "PerExecution" and self.state.budgets is not None:
                wait = await self.state.budgets.take(self.state.namespace,
                                                     doc["metadata"]["name"],
                                                     f"{scope}/{key}")
            else:
                wait = self.state.windows.take(f"{doc['metadata']['name']}/{scope}/{key}",
                                               int(spec["requests"]), window)
            if wait is not None:
                raise Refusal(429, f"rate limit {doc['metadata']['name']} "
                              f"({spec['requests']} per {spec['window']}, {scope}) exceeded",
                              {"retry-after": retry_after(wait)})

    async def _budget(self, rule: AIRule, doc: dict[str, Any] | None) -> None:
        budget = rule.budget
        assert self.codec is not None
        asked = self.codec.request.max_output_tokens
        cap = budget.get("maxOutputTokensPerRequest")
        if cap and asked is not None and asked > cap:
            raise Refusal(429, f"the request asks for up to {asked} output tokens; "
                          f"maxOutputTokensPerRequest of {rule.route} is {cap}")
        per_exec = budget.get("maxTokensPerExecution")
        if per_exec and self.who is not None:
            used = self.state.execution_tokens.used(self.who.invocation, rule.name)
            if used >= per_exec:
                raise Refusal(429, f"token budget of {rule.route} exhausted for this "
                              f"execution ({used} of maxTokensPerExecution {per_exec})")
        per_day = budget.get("maxTokensPerDay")
        if per_day and self.state.budgets is not None:
            used = await self.state.budgets.used(self.state.namespace, rule.route,
                                                 self.gateway)
            if used >= per_day:
                raise Refusal(429, f"daily token budget of {rule.route} exhausted "
                              f"({used} of maxTokensPerDay {per_day}, UTC day)")

    def _refuse(self, refusal: Refusal) -> pb.ProcessingResponse:
        self.record.denied = refusal.message
        self.record.status = refusal.status
        headers = dict(refusal.headers)
        body = refusal.body
        if body is None and self.codec is not None:
            body, refusal.content_type = self.codec.error_body(refusal.status,
                                                               refusal.message)
        if body is None:
            body = (refusal.message + "\n").encode()
        headers["content-type"] = refusal.content_type
        headers["x-clrk-denied"] = "true"
        self.record.response_headers = dict(headers)
        self.record.bytes_received = len(body)
        return pb.ProcessingResponse(immediate_response=pb.ImmediateResponse(
            status=http_status_pb2.HttpStatus(code=refusal.status),
            headers=_mutation(headers, []), body=body, details="clrk_policy_denied"))

    # -- response ----------------------------------------------------------------------

    def response_headers(self, msg: pb.HttpHeaders) -> pb.ProcessingResponse:
        headers = headers_of(msg)
        self.record.response_headers = headers
        self.record.status = int(headers.get(":status", "0") or 0)
        content_type = headers.get("content-type", "")
        if self.codec is not None:
            self.codec.response_started(content_type, headers)
        if self.translation is not None:
            self.translation.response_started(self.record.status, content_type)
            self.upstream = codec_for(self.translation.target, self.record.path)
            self.upstream.response_started(content_type, headers)
        want = self._capture_policy()
        if want[1]:
            capture = Capture(want[2], want[3])
            if capture.wants(content_type):
                self.record.response_body = capture
        mutation = pb.HeaderMutation()
        if self.scrubber is not None:
            scrubbed, self.scrubbed = _scrubbed_headers(msg, self.scrubber.patterns)
            if scrubbed is not None:
                mutation.CopyFrom(scrubbed)
        if self.tools_filter is not None and 200 <= self.record.status < 300:
            self.tools_filter.sse = "text/event-stream" in content_type
            mutation.remove_headers.append("content-length")
        else:
            self.tools_filter = None
        if self.translation is not None:
            mutation.remove_headers.append("content-length")
        answer = pb.ProcessingResponse(response_headers=pb.HeadersResponse(
            response=pb.CommonResponse(header_mutation=mutation)) if mutation.ByteSize()
            else pb.HeadersResponse())
        if (self.scrubber is not None or self.translation is not None) \
                and not msg.end_of_stream:
            answer.mode_override.CopyFrom(SCRUB_BODY)
        return answer

    def response_body(self, msg: pb.HttpBody) -> pb.ProcessingResponse:
        self.record.bytes_received += len(msg.body)
        out, changed = msg.body, False
        if self.translation is not None and self.upstream is not None:
            self.upstream.feed(msg.body)
            out, changed = self.translation.feed(msg.body, msg.end_of_stream), True
        elif self.codec is not None:
            self.codec.feed(msg.body)
        if self.record.response_body is not None:
            self.record.response_body.add(out)  # what the agent gets
        if self.tools_filter is not None:
            out, changed = self.tools_filter.feed(msg.body, msg.end_of_stream), True
            if self.tools_filter.removed:
                self.record.attributes["clrk.mcp.tools_hidden"] = str(
                    self.tools_filter.removed)
        if self.scrubber is not None:
            scrubbed = self.scrubber.feed(out, msg.end_of_stream)
            out, changed = scrubbed, changed or scrubbed != out
        if not changed:
            return pb.ProcessingResponse(response_body=pb.BodyResponse())
        mutation = pb.BodyMutation(body=out) if out else pb.BodyMutation(clear_body=True)
        return pb.ProcessingResponse(response_body=pb.BodyResponse(
            response=pb.CommonResponse(body_mutation=mutation)))

    async def finish(self) -> None:
        """Usage, budgets and the record; called once, however the stream ended."""
        if self.finished:
            return
        self.finished = True
        attrs = self.record.attributes
        scrubbed = self.scrubbed + (self.scrubber.count if self.scrubber else 0)
        if scrubbed:
            attrs["clrk.egress.scrubbed"] = str(scrubbed)
        reader = self.upstream or self.codec  # the Backend's own answer, when translated
        if reader is not None and not self.record.denied and self.record.status:
            usage = reader.finish()
            attrs.update(usage.attributes(self.record.status))
            attrs.update(billed_as(reader.provider, usage.response_model
                                   or reader.request.model))
            if usage.known and self.rule is not None and usage.total:
                await self._charge(self.rule, usage.total)
        if self.state.records is not None:
            self.state.records.record(self.gateway, self.record.item(
                self.who.to_json() if self.who else None, self.span_id))

    async def _charge(self, rule: AIRule, tokens: int) -> None:
        if self.who is not None:
            self.state.execution_tokens.add(self.who.invocation, rule.name, tokens)
        if rule.budget.get("maxTokensPerDay") and self.state.budgets is not None:
            try:
                await self.state.budgets.add(self.state.namespace, rule.route, self.gateway,
                                             tokens)
            except Exception as err:
                log.error("tokens of %s not charged to its day budget: %s", rule.route, err)
