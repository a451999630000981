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

    name: str = Field(min_length=1, description="Variable name.")
    value: str = Field(default="", description="Literal value.")
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
    cpu: Quantity | None = Field(default=None, description="CPU cores, e.g. 1 or 500m.")
    memory: Quantity | None = Field(default=None, description="Memory, e.g. 512Mi.")


class ResourceLimits(Model):
    cpu: Quantity = Field(default="1", description="CPU limit (default 1 core).")
    memory: Quantity = Field(default="512Mi", description="Memory limit (default 512Mi); "
                             "swap is always 0.")


class ComputeResources(Model):
    """CPU and memory limits and requests."""

    limits: ResourceLimits = Field(default_factory=ResourceLimits)
    requests: ResourceList | None = None


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
    gateway_ref: str = Field(min_length=1, description="Name of an EgressGateway in the "
                             "agent's namespace.")


class SandboxSpec(Model):
    """What runs in the sandbox."""

    image: ImageRef = Field(description="OCI image reference.")
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] | None = None
    command: list[str] | None = Field(default=None, description="Replaces the image "
                                      "ENTRYPOINT; the image CMD is always ignored.")
    args: list[str] | None = None
    working_dir: str | None = None
    env: list[EnvVar] | None = Field(default=None, description="Literal variables only.")
    resources: Resources = Field(default_factory=Resources)
    egress_refs: list[EgressRef] | None = None

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
    labels: dict[str, str] | None = None
    annotations: dict[str, str] | None = None


class AgentTemplate(Model):
    metadata: TemplateMetadata | None = None
    spec: SandboxSpec


class Delivery(Model):
    mode: Literal["Stdin", "Metadata"] = Field(
        default="Stdin", description="Stdin: a CloudEvents envelope on stdin. Metadata: "
        "GET $CLRK_METADATA_URL/event and POST $CLRK_METADATA_URL/response.")


class AgentStatus(Model):
    observed_generation: int | None = None
    conditions: list[Condition] | None = None
    latest_created_revision_name: str | None = None
    latest_ready_revision_name: str | None = None
    serving_revision_name: str | None = Field(
        default=None, description="The revision invocations run: the pinned one, else the "
        "latest (once the controller has cut it).")


class TaskAgentStatus(AgentStatus):
    last_schedule_time: str | None = None
    next_schedule_time: str | None = None
    in_flight: int | None = None


class TaskAgentSpec(Model):
    worker_pool_ref: str = Field(default="default", min_length=1,
                                 description="WorkerPool in the same namespace.")
    timeout: PositiveDuration = Field(default="100s", description="Wall-clock cap per "
                                      "execution (default 100s).")
    template: AgentTemplate
    egress_refs: list[EgressRef] | None = None
    delivery: Delivery = Field(default_factory=Delivery)
    schedule: Annotated[str, AfterValidator(check_schedule)] | None = Field(
        default=None, description="Cron (5 fields), @hourly-style descriptors or "
        "'@every <duration>'.")
    schedule_input: Any = Field(default=None, description="Becomes .data on cron fires.")
    warm_pool_size: int = Field(default=0, ge=0)
    warm_pool_idle_ttl: Duration | None = Field(default=None, alias="warmPoolIdleTTL")
    max_concurrent: int = Field(default=0, ge=0, description="0 = unlimited.")
    pinned_revision_name: str | None = Field(
        default=None, pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?-[0-9]{5}$",
        description="Rollback: run this AgentSandboxRevision of the agent (e.g. "
        "word-count-00001) instead of the latest template; remove it to follow "
        "spec.template again. Template changes still cut new revisions meanwhile.")


class DaemonAgentStatus(AgentStatus):
    phase: Literal["Pending", "Running", "CrashLoopBackOff", "Completed", "Failed",
                   "Stopped"] | None = None
    up_since: str | None = None
    restart_count: int | None = None
    worker: str | None = None
    last_exit_code: int | None = None
    message: str | None = None


class DaemonAgentSpec(Model):
    worker_pool_ref: str = Field(default="default", min_length=1)
    restart_policy: Literal["Always", "OnFailure", "Never"] = "Always"
    max_restarts: int = Field(default=0, ge=0, description="0 = unlimited.")
    max_lifetime_seconds: int = Field(default=0, ge=0, description="0 = forever.")
    egress_refs: list[EgressRef] | None = None
    template: AgentTemplate
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
    spec: TaskAgentSpec
    status: TaskAgentStatus | None = None


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
    spec: DaemonAgentSpec
    status: DaemonAgentStatus | None = None
