"""WorkerPool: the fleet of workers that host sandboxes."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field

from clrk.api.agents import ComputeResources
from clrk.api.base import KindInfo, Model, PrinterColumn, Resource
from clrk.api.meta import Condition, LocalObjectReference
from clrk.api.registry import register


class WorkerTemplate(Model):
    image: str | None = Field(default=None, description="Worker image (cluster mode).")
    node_selector: dict[str, str] | None = None
    image_pull_secrets: list[LocalObjectReference] | None = Field(
        default=None, description="Secrets with registry credentials for agent images.")
    # The worker's own CPU and memory. No process limit: that is an agent's (its template's
    # resources.pids, per sandbox); the worker itself runs no agent code.
    resources: ComputeResources | None = None
    tolerations: list[dict[str, Any]] | None = None


class WorkerPoolSpec(Model):
    replicas: int = Field(default=1, ge=0)
    max_executions_per_worker: int = Field(default=32, ge=1)
    warm_pool: int = Field(default=0, ge=0, description="Sandboxes pre-spawned per worker.")
    template: WorkerTemplate = Field(default_factory=WorkerTemplate)


class WorkerPoolStatus(Model):
    observed_generation: int | None = None
    replicas: int | None = None
    ready_replicas: int | None = None
    capacity: int | None = Field(default=None, description="Executions the ready workers "
                                 "take at once.")
    conditions: list[Condition] | None = None


@register
class WorkerPool(Resource):
    """A fleet of workers; agents bind to a pool by name in the same namespace."""

    kind_info: ClassVar[KindInfo] = KindInfo(
        kind="WorkerPool", plural="workerpools", short_names=("wp",),
        printer_columns=(
            PrinterColumn("Replicas", ".spec.replicas", "integer"),
            PrinterColumn("Ready", ".status.readyReplicas", "integer"),
            PrinterColumn("Max-Exec", ".spec.maxExecutionsPerWorker", "integer"),
            PrinterColumn("Warm", ".spec.warmPool", "integer", priority=1),
            PrinterColumn("Age", ".metadata.creationTimestamp", "date"),
        ),
    )
    spec: WorkerPoolSpec = Field(default_factory=WorkerPoolSpec)
    status: WorkerPoolStatus | None = None
