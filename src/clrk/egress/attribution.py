"""Which execution a sandbox address belongs to, for the records of its connections.

Envoy writes a connection's record when it closes, which can be after the sandbox is
gone, so an address keeps its attribution until it is given to another execution (the
network hands addresses out in turn, so that is hundreds of sandboxes later).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Attribution:
    namespace: str
    agent_kind: str
    agent_name: str
    invocation: str
    trace_id: str = ""
    span_id: str = ""

    def to_json(self) -> dict[str, str]:
        return {"namespace": self.namespace, "agentKind": self.agent_kind,
                "agentName": self.agent_name, "invocation": self.invocation,
                "traceId": self.trace_id, "spanId": self.span_id}


@dataclass
class Attributions:
    by_address: dict[str, Attribution] = field(default_factory=dict)
    # Told each address's trace as it is given out (Envoy reads it to add traceparent).
    traces: Callable[[str, str], None] | None = None

    def record(self, addresses: Iterable[str], who: Attribution) -> None:
        for address in addresses:
            self.by_address[address] = who
            if self.traces is not None:
                self.traces(address, who.trace_id)

    def of(self, address: str) -> Attribution | None:
        return self.by_address.get(address.removeprefix("::ffff:"))

    def json_of(self, address: str) -> dict[str, str] | None:
        who = self.of(address)
        return None if who is None else who.to_json()
