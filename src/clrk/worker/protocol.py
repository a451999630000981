"""The dispatch protocol between whoever invokes an agent and the worker that runs it.

The worker answers a dispatch with newline-delimited JSON frames: output chunks as
they come (an "alive" frame when the agent has been quiet for a while), then exactly
one result frame. The invoker turns that into the agent's
HTTP contract (body, status, X-Clrk-Exit-Code). A warm sandbox's TRACEPARENT was fixed
when it started: a trace frame, before the agent runs, tells the invoker the trace and
span ids the execution has, which its Invocation adopts.
"""

from __future__ import annotations

import base64
import json
from dataclasses import asdict, dataclass
from typing import Any

from clrk.worker.agents.task import Outcome, Trace


@dataclass(frozen=True)
class Dispatch:
    agent: dict[str, Any]  # the TaskAgent, as stored
    template: dict[str, Any]  # the revision's template
    event: dict[str, Any]  # the CloudEvents envelope
    revision: str | None = None  # the revision of ``template`` (a warm sandbox's key)
    image_digest: str | None = None  # what the revision's image resolved to
    invocation: dict[str, str] | None = None  # name, traceId, spanId: for attribution

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), separators=(",", ":")).encode()


def output_frame(stream: str, data: bytes) -> bytes:
    return json.dumps({"type": stream, "data": base64.b64encode(data).decode()}).encode() + b"\n"


STARTED_FRAME = b'{"type":"started"}\n'  # the agent's process is about to run
# Sent while an execution is quiet, so an invoker that hears nothing for ALIVE_TIMEOUT
# knows the worker is gone (a node lost without closing its connections).
ALIVE_FRAME = b'{"type":"alive"}\n'
ALIVE_SECONDS = 5.0
ALIVE_TIMEOUT = 20.0
Frame = bytes | Outcome | Trace


def trace_frame(trace: Trace) -> bytes:
    return json.dumps({"type": "trace", "traceId": trace.trace_id,
                       "spanId": trace.span_id}).encode() + b"\n"


def result_frame(outcome: Outcome) -> bytes:
    return json.dumps({"type": "result", "phase": outcome.phase,
                       "httpStatus": outcome.http_status, "exitCode": outcome.exit_code,
                       "reason": outcome.reason, "warm": outcome.warm}).encode() + b"\n"


def parse_frame(line: bytes) -> tuple[str, Frame]:
    doc = json.loads(line)
    if doc["type"] == "result":
        return "result", Outcome(doc["phase"], doc["httpStatus"], doc["exitCode"],
                                 doc["reason"], bool(doc.get("warm")))
    if doc["type"] == "trace":
        return "trace", Trace(str(doc["traceId"]), str(doc["spanId"]))
    return str(doc["type"]), base64.b64decode(doc.get("data", ""))
