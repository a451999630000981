"""Invocation: the attributed record of one agent execution (system-written)."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from clrk.api.base import KindInfo, Model, PrinterColumn, Resource
from clrk.api.registry import register


class InvocationSpec(Model):
    """Which agent ran, why, and where its telemetry is."""

    agent_kind: Literal["TaskAgent", "DaemonAgent"] = Field(
        description="Kind of the agent: TaskAgent, or DaemonAgent (one invocation per run).")
    agent_name: str = Field(min_length=1, description="Name of the agent, in the "
                            "invocation's namespace.")
    revision: str | None = Field(default=None, description="The AgentSandboxRevision that "
                                 "ran (unset when the agent had none yet).")
    trigger: str | None = Field(
        default=None, description="What started it: http (or the caller's X-Clrk-Trigger "
        "header), cron, cli (clrk agents run-task) or daemon.")
    execution_id: str | None = Field(
        default=None, description="The execution's id (the envelope's id): "
        "X-Clrk-Execution-ID, else x-request-id, else generated.")
    trace_id: str | None = Field(default=None, description="The trace of the execution's "
                                 "spans and log records in the telemetry store.")
    span_id: str | None = Field(default=None, description="The execution's own span in that "
                                "trace; the parent of its egress spans.")


class InvocationStatus(Model):
    """How the execution went."""

    phase: Literal["Pending", "Dispatched", "Running", "Succeeded", "Failed", "Timeout",
                   "Rejected"] = Field(
        default="Pending", description="Pending, Dispatched (a worker took it), Running, "
        "then Succeeded, Failed, Timeout, or Rejected (refused before it ran).")
    reason: str | None = Field(
        default=None, description="Why it ended as it did, as `Reason: detail` (e.g. "
        "MaxConcurrent, NoWorker, ImagePullFailed, Interrupted).")
    message: str | None = Field(default=None, description="Not written yet: reason "
                                "carries the detail.")
    start_time: str | None = Field(default=None, description="When the agent started "
                                   "running (RFC 3339).")
    completion_time: str | None = Field(default=None, description="When it ended "
                                        "(RFC 3339).")
    exit_code: int | None = Field(default=None, description="The agent's exit code.")
    http_status: int | None = Field(
        default=None, description="The HTTP status the caller got: 200 (exit 0), 500 "
        "(non-zero exit), 504 (timeout), or the refusal's (413, 429, 503).")
    worker: str | None = Field(default=None, description="The worker that ran it.")
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
    spec: InvocationSpec = Field(description="Which agent ran and why; written by clrk.")
    status: InvocationStatus | None = Field(default=None, description="How the execution "
                                            "went; written by clrk.")
