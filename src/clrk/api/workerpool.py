"""WorkerPool: the fleet of workers that host sandboxes."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field

from clrk.api.agents import ComputeResources, EnvVar
from clrk.api.base import KindInfo, Model, PrinterColumn, Resource
from clrk.api.meta import Condition, LocalObjectReference
from clrk.api.registry import register

_ON_PODS = ("Applied to the worker pods on a Kubernetes cluster; clrk dev runs its workers "
            "as local processes.")
WORKER_IMAGE_REPOSITORY = "ghcr.io/apoxy-dev/clrk-worker"
# The ClusterRole of what a worker does (`clrk install` creates it; each pool's workers
# are bound to it in the pool's namespace).
WORKER_CLUSTER_ROLE = "clrk-worker"


def worker_image(version: str) -> str:
    """The worker image published for clrk ``version`` (what a pool without
    ``template.image`` runs)."""
    return f"{WORKER_IMAGE_REPOSITORY}:v{version}"


class WorkerTemplate(Model):
    """The pool's workers: image pull credentials, and how worker pods run on a cluster."""

    image: str | None = Field(default=None, description="Worker image (`clrk install "
                              "--worker-image` sets it; default: the worker image of the "
                              f"controller manager's own version). {_ON_PODS}")
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] | None = Field(
        default=None, description="When the kubelet pulls the worker image (Kubernetes' "
        f"default: Always for :latest, else IfNotPresent). {_ON_PODS}")
    env: list[EnvVar] | None = Field(
        default=None, description=f"Extra environment variables of the worker. {_ON_PODS}")
    node_selector: dict[str, str] | None = Field(
        default=None, description=f"Node labels the worker pods must match. {_ON_PODS}")
    image_pull_secrets: list[LocalObjectReference] | None = Field(
        default=None, description="Secrets (dockerconfigjson or dockercfg) in the pool's "
        "namespace: the kubelet pulls the worker image with them, and the workers pull "
        "agent images with their registry credentials.")
    # The worker's own CPU and memory. No process limit: that is an agent's (its template's
    # resources.pids, per sandbox); the worker itself runs no agent code.
    resources: ComputeResources | None = Field(
        default=None, description="CPU and memory of each worker itself (an agent's own "
        f"limits are its template's resources). {_ON_PODS}")
    tolerations: list[dict[str, Any]] | None = Field(
        default=None, description=f"Kubernetes tolerations of the worker pods. {_ON_PODS}")
    affinity: dict[str, Any] | None = Field(
        default=None, description=f"Kubernetes affinity of the worker pods. {_ON_PODS}")


class WorkerPoolSpec(Model):
    """The desired state of a WorkerPool."""

    replicas: int = Field(default=1, ge=0, description="Workers wanted (default 1): on a "
                          "cluster, the replicas of the pool's Deployment `<pool>-workers`; "
                          "clrk dev starts `--workers` local workers whatever it says.")
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
    warm_sandboxes: int | None = Field(default=None, description="Sandboxes the ready "
                                       "workers keep started ahead (TaskAgents' "
                                       "warmPoolSize).")
    pods_ready: int | None = Field(default=None, description="On a cluster: the ready pods "
                                   "of the pool's Deployment `<pool>-workers`.")
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
