"""Invocation: the attributed record of one agent execution (system-written)."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from clrk.api.base import KindInfo, Model, PrinterColumn, Resource
from clrk.api.registry import register


class InvocationSpec(Model):
    agent_kind: Literal["TaskAgent", "DaemonAgent"]
    agent_name: str = Field(min_length=1)
    revision: str | None = None
    trigger: str | None = Field(default=None, description="http, cron, ...")
    execution_id: str | None = None
    trace_id: str | None = Field(default=None, description="The trace of the execution's "
                                 "spans and log records in the telemetry store.")
    span_id: str | None = None


class InvocationStatus(Model):
    phase: Literal["Pending", "Dispatched", "Running", "Succeeded", "Failed", "Timeout",
                   "Rejected"] = "Pending"
    reason: str | None = None
    message: str | None = None
    start_time: str | None = None
    completion_time: str | None = None
    exit_code: int | None = None
    http_status: int | None = None
    worker: str | None = None
    warm_start: bool | None = Field(default=None, description="The execution ran in a "
                                    "sandbox the warm pool had started ahead.")


@register
class Invocation(Resource):
    """One execution of an agent, from dispatch to result."""

    kind_info: ClassVar[KindInfo] = KindInfo(
        kind="Invocation", plural="invocations", short_names=("inv",), user_creatable=False,
        printer_columns=(
            PrinterColumn("Agent", ".spec.agentName"),
            PrinterColumn("Phase", ".status.phase"),
            PrinterColumn("Trigger", ".spec.trigger"),
            PrinterColumn("Exit", ".status.exitCode", "integer", priority=1),
            PrinterColumn("Reason", ".status.reason", priority=1),
            PrinterColumn("Worker", ".status.worker", priority=1),
            PrinterColumn("Started", ".status.startTime", "date"),
            PrinterColumn("Age", ".metadata.creationTimestamp", "date"),
        ),
    )
    spec: InvocationSpec
    status: InvocationStatus | None = None
