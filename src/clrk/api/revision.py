"""AgentSandboxRevision: an immutable snapshot of an agent's template."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from clrk.api.agents import AgentTemplate
from clrk.api.base import KindInfo, Model, PrinterColumn, Resource
from clrk.api.meta import Condition
from clrk.api.registry import register


class RevisionSpec(Model):
    agent_kind: Literal["TaskAgent", "DaemonAgent"]
    agent_name: str = Field(min_length=1)
    generation: int = Field(ge=1, description="The agent generation this snapshot was taken at.")
    template: AgentTemplate


class ImagePull(Model):
    """Progress of the image pull a worker started when the revision appeared."""

    completed_bytes: int = Field(default=0, ge=0)
    total_bytes: int = Field(default=0, ge=0)
    layers: int = Field(default=0, ge=0)
    done: bool = False


class RevisionStatus(Model):
    conditions: list[Condition] | None = None
    image_digest: str | None = None
    image_pull: ImagePull | None = None


@register
class AgentSandboxRevision(Resource):
    """Immutable snapshot of an agent's template, named {agent}-{5-digit generation}."""

    kind_info: ClassVar[KindInfo] = KindInfo(
        kind="AgentSandboxRevision", plural="agentsandboxrevisions", short_names=("asr",),
        printer_columns=(
            PrinterColumn("Agent", ".spec.agentName"),
            PrinterColumn("Kind", ".spec.agentKind", priority=1),
            PrinterColumn("Generation", ".spec.generation", "integer"),
            PrinterColumn("Image", ".spec.template.spec.image"),
            PrinterColumn("Digest", ".status.imageDigest", priority=1),
            PrinterColumn("Age", ".metadata.creationTimestamp", "date"),
        ),
    )
    spec: RevisionSpec
    status: RevisionStatus | None = None
