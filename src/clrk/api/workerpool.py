"""WorkerPool: the fleet of workers that host sandboxes."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field

from clrk.api.agents import ComputeResources
from clrk.api.base import KindInfo, Model, PrinterColumn, Resource
from clrk.api.meta import Condition, LocalObjectReference
from clrk.api.registry import register

_NO_PODS = ("For worker pods on a Kubernetes cluster, which clrk does not create yet; "
            "clrk dev runs its workers as local processes.")


class WorkerTemplate(Model):
    """The pool's workers: image pull credentials, and what worker pods would run with."""

    image: str | None = Field(default=None, description="Worker image (set by `clrk install "
                              f"--worker-image`). {_NO_PODS}")
    node_selector: dict[str, str] | None = Field(
        default=None, description=f"Node labels the worker pods must match. {_NO_PODS}")
    image_pull_secrets: list[LocalObjectReference] | None = Field(
        default=None, description="Secrets (dockerconfigjson or dockercfg) in the pool's "
        "namespace whose registry credentials the pool's workers use to pull agent images.")
    # The worker's own CPU and memory. No process limit: that is an agent's (its template's
    # resources.pids, per sandbox); the worker itself runs no agent code.
    resources: ComputeResources | None = Field(
        default=None, description="CPU and memory of each worker itself (an agent's own "
        f"limits are its template's resources). {_NO_PODS}")
    tolerations: list[dict[str, Any]] | None = Field(
        default=None, description=f"Kubernetes tolerations of the worker pods. {_NO_PODS}")


class WorkerPoolSpec(Model):
    """The desired state of a WorkerPool."""

    replicas: int = Field(default=1, ge=0, description="Workers wanted (default 1), "
                          "reported back as status.replicas. clrk dev starts `--workers` "
                          "local workers whatever it says.")
    max_executions_per_worker: int = Field(
        default=32, ge=1, description="Executions one worker runs at once (default 32), "
        "unless the worker was started with a fixed capacity. With every worker full, "
        "invocations get 429.")
    warm_pool: int = Field(default=0, ge=0, description="Accepted and not used yet: warm "
                           "sandboxes are kept per agent, by a TaskAgent's spec.warmPoolSize.")
    template: WorkerTemplate = Field(default_factory=WorkerTemplate, description="How the "
                                     "pool's workers pull images and, on a cluster, run.")


class WorkerPoolStatus(Model):
    """What the controller observed of a WorkerPool's workers."""

    observed_generation: int | None = Field(
        default=None, description="The metadata.generation the controller last reconciled.")
    replicas: int | None = Field(default=None, description="spec.replicas, as last observed.")
    ready_replicas: int | None = Field(default=None, description="Workers of the pool whose "
                                       "heartbeats are current.")
    capacity: int | None = Field(default=None, description="Executions the ready workers "
                                 "take at once.")
    conditions: list[Condition] | None = Field(
        default=None, description="Accepted; Ready when at least one worker reports to the "
        "pool (reason WorkersReady, else NoWorkers).")


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
    spec: WorkerPoolSpec = Field(default_factory=WorkerPoolSpec,
                                 description="The desired state of the WorkerPool.")
    status: WorkerPoolStatus | None = Field(default=None, description="The pool's workers as "
                                            "observed by the controller.")
