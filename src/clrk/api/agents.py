"""TaskAgent and DaemonAgent, and the sandbox template they share."""

from __future__ import annotations

import re
from typing import Annotated, Any, ClassVar, Literal

from croniter import croniter
from pydantic import AfterValidator, Field, WithJsonSchema, field_validator

from clrk.api.base import KindInfo, Model, PrinterColumn, Resource
from clrk.api.meta import (
    Condition,
    Duration,
    PositiveDuration,
    Quantity,
    parse_duration,
)
from clrk.api.registry import register

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_IMAGE = re.compile(
    r"^(?:(?P<registry>[a-zA-Z0-9.-]+(?::[0-9]+)?)/)?"
    r"(?P<path>[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*)"
    r"(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}))?"
    r"(?:@(?P<digest>sha256:[a-f0-9]{64}))?$"
)
_DESCRIPTORS = {"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}


def _check_image(ref: str) -> str:
    if not _IMAGE.match(ref):
        raise ValueError(
            f"invalid image reference {ref!r}: "
            "expected [registry[:port]/]path[:tag][@sha256:digest]"
        )
    return ref


ImageRef = Annotated[str, AfterValidator(_check_image), WithJsonSchema(
    {"type": "string", "minLength": 1})]


def check_schedule(expr: str) -> str:
    """5-field cron, a descriptor (@hourly, ...) or ``@every <duration>``."""
    text = expr.strip()
    if text.startswith("@every"):
        rest = text[len("@every"):].strip()
        if not rest:
            raise ValueError("@every needs a duration, e.g. '@every 30s'")
        if parse_duration(rest).total_seconds() <= 0:
            raise ValueError(f"@every duration {rest!r} must be greater than 0")
        return expr
    if text in _DESCRIPTORS:
        return expr
    if text.startswith("@"):
        raise ValueError(f"unknown schedule descriptor {text!r}: use one of "
                         f"{', '.join(sorted(_DESCRIPTORS))} or '@every <duration>'")
    if len(text.split()) != 5:
        raise ValueError(f"invalid cron expression {expr!r}: expected 5 fields "
                         "(minute hour day-of-month month day-of-week)")
    if not croniter.is_valid(text):
        raise ValueError(f"invalid cron expression {expr!r}")
    return expr


class EnvVar(Model):
    """A literal environment variable. Secrets never enter the sandbox."""

    name: str = Field(min_length=1, description="Variable name: letters, digits and _, "
                      "not starting with a digit; unique within env.")
    value: str = Field(default="", description="Literal value (default empty).")
    value_from: Any = Field(default=None, description="Not supported: rejected at admission.")

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not _ENV_NAME.match(v):
            raise ValueError(f"invalid environment variable name {v!r}")
        return v

    @field_validator("value_from")
    @classmethod
    def _no_value_from(cls, v: Any) -> Any:
        if v is not None:
            raise ValueError(
                "valueFrom is not supported: secrets must not enter the sandbox; use a "
                "CredentialInjectionPolicy to inject credentials at the egress gateway"
            )
        return v


class ResourceList(Model):
    """CPU and memory amounts, as Kubernetes quantities."""

    cpu: Quantity | None = Field(default=None, description="CPU cores, e.g. 1 or 500m.")
    memory: Quantity | None = Field(default=None, description="Memory in bytes with an "
                                    "optional suffix, e.g. 512Mi or 1Gi.")


class ResourceLimits(Model):
    """The most CPU and memory a sandbox may use."""

    cpu: Quantity = Field(default="1", description="CPU limit in cores, e.g. 2 or 500m "
                          "(default 1).")
    memory: Quantity = Field(default="512Mi", description="Memory limit, e.g. 1Gi (default "
                             "512Mi); swap is always 0, and an agent past it is OOM-killed.")


class ComputeResources(Model):
    """CPU and memory limits and requests."""

    limits: ResourceLimits = Field(
        default_factory=ResourceLimits, description="The most CPU and memory that may be "
        "used (default 1 CPU, 512Mi); an agent's are enforced by its sandbox's cgroup.")
    requests: ResourceList | None = Field(
        default=None, description="Accepted for Kubernetes compatibility and not used: "
        "workers take executions by slots (maxExecutionsPerWorker), not by requests.")


# An agent's process limit, counted inside the sandbox. The worker turns it into the host
# tasks its pids cgroup may hold (clrk.worker.sandbox.spec.host_pids): on gVisor's ptrace
# platform every sandbox process costs the host several tasks (docs/architecture.md,
# "Process limit"). The default lets an agent run 128 threads and 64 child processes at
# once with room to spare; the maximum keeps one sandbox's share of the host's pids sane
# (512 come to 8320 host tasks; a 32768-pid host keeps 8192 for itself).
PIDS_DEFAULT = 256
PIDS_MAX = 512


class Resources(ComputeResources):
    """What an agent's sandbox may use: CPU, memory and processes."""

    pids: int = Field(
        default=PIDS_DEFAULT, ge=1, le=PIDS_MAX, strict=True,
        description=f"The most processes and threads the agent may have at once in its "
        f"sandbox (default {PIDS_DEFAULT}, at most {PIDS_MAX}). Reaching it ends the "
        "execution with the reason PidsLimit; a fork bomb ends there.")


class EgressRef(Model):
    """An EgressGateway the agent's traffic goes through."""

    gateway_ref: str = Field(min_length=1, description="Name of an EgressGateway in the "
                             "agent's namespace.")


class SandboxSpec(Model):
    """What runs in the sandbox."""

    image: ImageRef = Field(description="OCI image reference, "
                            "[registry[:port]/]path[:tag][@sha256:digest]. A worker pulls it "
                            "when the revision appears and records the digest the tag meant.")
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] | None = Field(
        default=None, description="Accepted for Kubernetes compatibility and ignored: the "
        "image is pulled when the revision appears and then used from the worker's cache.")
    command: list[str] | None = Field(default=None, description="Replaces the image "
                                      "ENTRYPOINT; the image CMD is always ignored.")
    args: list[str] | None = Field(default=None, description="Arguments after command (or "
                                   "after the image ENTRYPOINT when command is unset).")
    working_dir: str | None = Field(default=None, description="Working directory of the "
                                    "agent (default: the image's WORKDIR, else /).")
    env: list[EnvVar] | None = Field(
        default=None, description="Environment variables, literal values only. The image's "
        "ENV is not used: the agent sees these plus PATH, CLRK_METADATA_URL(_V6), the CA "
        "bundle variables, OTEL_EXPORTER_OTLP_ENDPOINT (its spans and logs, stored under "
        "its Invocation) and TRACEPARENT (the Invocation's span); an entry here of either "
        "name replaces ours.")
    resources: Resources = Field(default_factory=Resources, description="CPU, memory and "
                                 "process limits of the sandbox.")
    egress_refs: list[EgressRef] | None = Field(
        default=None, description="EgressGateways for this template; when set they take "
        "precedence over the agent's spec.egressRefs. Only the first entry carries the "
        "sandbox's traffic.")

    @field_validator("env")
    @classmethod
    def _unique_env(cls, v: list[EnvVar] | None) -> list[EnvVar] | None:
        seen: set[str] = set()
        for e in v or []:
            if e.name in seen:
                raise ValueError(f"duplicate environment variable {e.name!r}")
            seen.add(e.name)
        return v


class TemplateMetadata(Model):
    """Labels and annotations of an agent template."""

    labels: dict[str, str] | None = Field(
        default=None, description="Labels of the template. Part of the template (a change "
        "cuts a new revision); clrk does not otherwise use them.")
    annotations: dict[str, str] | None = Field(
        default=None, description="Annotations of the template. Part of the template (a "
        "change cuts a new revision); clrk does not otherwise use them.")


class AgentTemplate(Model):
    """The sandbox an agent runs in; every change cuts a new AgentSandboxRevision."""

    metadata: TemplateMetadata | None = Field(default=None, description="Labels and "
                                              "annotations of the template.")
    spec: SandboxSpec = Field(description="What runs in the sandbox: image, command, "
                              "environment, resources and egress.")


def gateway_of(template: AgentTemplate, refs: list[EgressRef] | None) -> str | None:
    """The EgressGateway an agent's sandboxes send their traffic to: the template's
    egressRefs, else the agent's; the first one. None: the agent has no egress."""
    chosen = template.spec.egress_refs or refs
    return chosen[0].gateway_ref if chosen else None


class Delivery(Model):
    """How an execution's input reaches the agent."""

    mode: Literal["Stdin", "Metadata"] = Field(
        default="Stdin", description="Stdin: a CloudEvents envelope on stdin. Metadata: "
        "GET $CLRK_METADATA_URL/event and POST $CLRK_METADATA_URL/response.")


class AgentStatus(Model):
    """What the controllers observed of an agent."""

    observed_generation: int | None = Field(
        default=None, description="The metadata.generation the controller last reconciled.")
    conditions: list[Condition] | None = Field(
        default=None, description="Accepted, WorkerPoolReady, EgressConfigured and "
        "ImageReady; RevisionPinned while spec.pinnedRevisionName is set; Scheduled for a "
        "TaskAgent with a schedule.")
    latest_created_revision_name: str | None = Field(
        default=None, description="The AgentSandboxRevision that holds the current "
        "spec.template.")
    latest_ready_revision_name: str | None = Field(
        default=None, description="The newest revision whose image a worker has pulled.")
    serving_revision_name: str | None = Field(
        default=None, description="The revision invocations run: the pinned one, else the "
        "latest (once the controller has cut it).")


class TaskAgentStatus(AgentStatus):
    """What the controllers observed of a TaskAgent."""

    last_schedule_time: str | None = Field(
        default=None, description="When spec.schedule last fired (RFC 3339, UTC). Written "
        "before the fire, so a fire happens at most once.")
    next_schedule_time: str | None = Field(
        default=None, description="When spec.schedule fires next (RFC 3339, UTC).")
    in_flight: int | None = Field(
        default=None, description="Not written yet: the scheduler counts the executions in "
        "flight (for spec.maxConcurrent) in memory.")


class TaskAgentSpec(Model):
    """The desired state of a TaskAgent."""

    worker_pool_ref: str = Field(
        default="default", min_length=1, description="Name of the WorkerPool, in the "
        "agent's namespace, whose workers run it (default \"default\").")
    timeout: PositiveDuration = Field(
        default="100s", description="Wall-clock cap per execution, a Go duration such as "
        "60s or 1m30s (default 100s). Past it the agent is killed and the caller gets 504.")
    template: AgentTemplate = Field(description="The sandbox each execution runs in. Every "
                                    "change cuts a new AgentSandboxRevision.")
    egress_refs: list[EgressRef] | None = Field(
        default=None, description="EgressGateways the sandboxes' traffic goes through; only "
        "the first is used, and template.spec.egressRefs takes precedence. None: all egress "
        "is denied.")
    delivery: Delivery = Field(default_factory=Delivery, description="How the input reaches "
                               "the agent (default: a CloudEvents envelope on stdin).")
    schedule: Annotated[str, AfterValidator(check_schedule)] | None = Field(
        default=None, description="Cron trigger in UTC: 5 fields, an @hourly-style "
        "descriptor or '@every <duration>'. HTTP triggers keep working; fires missed while "
        "nothing ran are skipped.")
    schedule_input: Any = Field(default=None, description="Any JSON value; it becomes the "
                                "envelope's .data on cron fires (default {}).")
    warm_pool_size: int = Field(
        default=0, ge=0, description="Sandboxes each worker of the pool keeps started ahead "
        "for this agent, so an invocation skips the cold start (default 0: none).")
    warm_pool_idle_ttl: Duration | None = Field(
        default=None, alias="warmPoolIdleTTL", description="How long (a Go duration) the "
        "warm pool stays filled without an invocation before it goes cold until the next "
        "one. Unset: it never goes cold.")
    max_concurrent: int = Field(
        default=0, ge=0, description="Most executions of this agent at once, across "
        "workers; more are refused with 429 (default 0: unlimited).")
    pinned_revision_name: str | None = Field(
        default=None, pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?-[0-9]{5}$",
        description="Rollback: run this AgentSandboxRevision of the agent (e.g. "
        "word-count-00001) instead of the latest template; remove it to follow "
        "spec.template again. Template changes still cut new revisions meanwhile.")


class DaemonAgentStatus(AgentStatus):
    """What the controllers and the daemon's worker observed of a DaemonAgent."""

    phase: Literal["Pending", "Running", "CrashLoopBackOff", "Completed", "Failed",
                   "Stopped"] | None = Field(
        default=None, description="Pending (no ready worker), Running, CrashLoopBackOff (a "
        "run lasted under 10 s and the restart waits), Completed or Failed (not restarted), "
        "or Stopped (changed, deleted or moved).")
    up_since: str | None = Field(default=None, description="When the current run started "
                                 "(RFC 3339, UTC).")
    restart_count: int | None = Field(default=None, description="Restarts since the daemon "
                                      "was last started on its worker.")
    worker: str | None = Field(default=None, description="The worker the controller placed "
                               "the daemon on; only that worker runs it.")
    last_exit_code: int | None = Field(default=None, description="Exit code of the last run "
                                       "that ended.")
    message: str | None = Field(default=None, description="Why the daemon is in its phase, "
                                "e.g. the last exit and the restart decision.")


class DaemonAgentSpec(Model):
    """The desired state of a DaemonAgent."""

    worker_pool_ref: str = Field(
        default="default", min_length=1, description="Name of the WorkerPool, in the "
        "agent's namespace, whose workers run it (default \"default\").")
    restart_policy: Literal["Always", "OnFailure", "Never"] = Field(
        default="Always", description="Which ended runs are restarted: Always (default), "
        "OnFailure (non-zero exits) or Never. After a run under 10 s the restart waits 1 s, "
        "doubling up to 60 s.")
    max_restarts: int = Field(default=0, ge=0, description="Most restarts before the daemon "
                              "is left Failed (default 0: unlimited).")
    max_lifetime_seconds: int = Field(
        default=0, ge=0, description="Seconds after which a run is stopped and started "
        "afresh, whatever the restart policy (default 0: runs forever).")
    egress_refs: list[EgressRef] | None = Field(
        default=None, description="EgressGateways the sandbox's traffic goes through; only "
        "the first is used, and template.spec.egressRefs takes precedence. None: all egress "
        "is denied.")
    template: AgentTemplate = Field(description="The sandbox the daemon runs in. Every "
                                    "change cuts a new AgentSandboxRevision and restarts the "
                                    "daemon on it.")
    pinned_revision_name: str | None = Field(
        default=None, pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?-[0-9]{5}$",
        description="Rollback: run this AgentSandboxRevision of the agent (e.g. "
        "word-count-00001) instead of the latest template; remove it to follow "
        "spec.template again. Template changes still cut new revisions meanwhile.")


_AGE = PrinterColumn("Age", ".metadata.creationTimestamp", "date")
# ImagePulled, Pulling, or why it failed (ImagePullFailed): the first thing a newcomer's
# agent that never runs needs to show.
_PULL = PrinterColumn("Pull", '.status.conditions[?(@.type=="ImageReady")].reason')


@register
class TaskAgent(Resource):
    """An agent run once per trigger: an HTTP request, a cron fire or a webhook."""

    kind_info: ClassVar[KindInfo] = KindInfo(
        kind="TaskAgent", plural="taskagents", short_names=("ta",), name_max_length=63,
        printer_columns=(
            PrinterColumn("Pool", ".spec.workerPoolRef"),
            PrinterColumn("Image", ".spec.template.spec.image"),
            PrinterColumn("Revision", ".status.servingRevisionName"),
            PrinterColumn("Pinned", ".spec.pinnedRevisionName"),
            _PULL,
            PrinterColumn("Accepted", '.status.conditions[?(@.type=="Accepted")].status'),
            PrinterColumn("Schedule", ".spec.schedule", priority=1),
            PrinterColumn("Timeout", ".spec.timeout", priority=1),
            _AGE,
        ),
    )
    spec: TaskAgentSpec = Field(description="The desired state of the TaskAgent.")
    status: TaskAgentStatus | None = Field(default=None, description="The observed state of "
                                           "the TaskAgent, written by clrk.")


@register
class DaemonAgent(Resource):
    """A long-lived agent process, supervised per its restart policy."""

    kind_info: ClassVar[KindInfo] = KindInfo(
        kind="DaemonAgent", plural="daemonagents", short_names=("da",), name_max_length=63,
        printer_columns=(
            PrinterColumn("Pool", ".spec.workerPoolRef"),
            PrinterColumn("Image", ".spec.template.spec.image"),
            PrinterColumn("Phase", ".status.phase"),
            PrinterColumn("Restarts", ".status.restartCount", "integer"),
            PrinterColumn("Revision", ".status.servingRevisionName"),
            PrinterColumn("Pinned", ".spec.pinnedRevisionName"),
            _PULL,
            _AGE,
        ),
    )
    spec: DaemonAgentSpec = Field(description="The desired state of the DaemonAgent.")
    status: DaemonAgentStatus | None = Field(default=None, description="The observed state "
                                             "of the DaemonAgent, written by clrk.")
