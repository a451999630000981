"""AgentSandboxRevision: an immutable snapshot of an agent's template."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from clrk.api.agents import AgentTemplate
from clrk.api.base import KindInfo, Model, PrinterColumn, Resource
from clrk.api.meta import Condition
from clrk.api.registry import register


class RevisionSpec(Model):
    """Which agent the snapshot is of, and its template then."""

    agent_kind: Literal["TaskAgent", "DaemonAgent"] = Field(
        description="Kind of the agent the revision belongs to.")
    agent_name: str = Field(min_length=1, description="Name of the agent, in the revision's "
                            "namespace.")
    generation: int = Field(ge=1, description="The agent generation this snapshot was taken at.")
    template: AgentTemplate = Field(description="The agent's spec.template at that "
                                    "generation; it never changes.")


class ImagePull(Model):
    """Progress of the image pull a worker started when the revision appeared."""

    completed_bytes: int = Field(default=0, ge=0, description="Bytes of the image's layers "
                                 "downloaded so far.")
    total_bytes: int = Field(default=0, ge=0, description="Bytes of the image's layers in "
                             "all (0 until known).")
    layers: int = Field(default=0, ge=0, description="Layers of the image.")
    done: bool = Field(default=False, description="Whether the pull has ended.")


class RevisionStatus(Model):
    """What the workers observed of a revision."""

    conditions: list[Condition] | None = Field(
        default=None, description="Ready: whether a worker has pulled the image (reason "
        "ImagePulled, or ImagePullFailed with the registry's answer).")
    image_digest: str | None = Field(
        default=None, description="The digest (sha256:...) the image reference resolved to "
        "when a worker pulled it.")
    image_pull: ImagePull | None = Field(
        default=None, description="Progress of the pull a worker started when the revision "
        "appeared.")


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
    spec: RevisionSpec = Field(description="The agent and the template snapshot; "
                               "immutable.")
    status: RevisionStatus | None = Field(default=None, description="The image pull's "
                                          "progress and result, written by the workers.")
