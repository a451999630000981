"""A WorkerPool on a Kubernetes cluster becomes its workers' workload: a Deployment and a
headless Service named ``<pool>-workers`` (selected by ``clrk.apoxy.dev/workerpool``), and
a ServiceAccount bound, in the pool's namespace only, to the ``clrk-worker`` ClusterRole
(a pool serves the agents of its own namespace, so its workers need nothing elsewhere).

Rendered from lightkube's typed models, without I/O; :mod:`clrk.controllers.workerpool`
applies them. The pod is privileged as runsc, network namespaces and iptables need
(seccomp and AppArmor unconfined); SIGTERM drains the worker, so the grace period covers
the longest TaskAgent timeout of the pool (capped).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from lightkube.models.apps_v1 import DeploymentSpec
from lightkube.models.core_v1 import (
    Affinity,
    AppArmorProfile,
    Container,
    ContainerPort,
    EmptyDirVolumeSource,
    EnvVar,
    EnvVarSource,
    HTTPGetAction,
    LocalObjectReference,
    ObjectFieldSelector,
    PodSpec,
    PodTemplateSpec,
    Probe,
    ResourceRequirements,
    SeccompProfile,
    SecurityContext,
    ServicePort,
    ServiceSpec,
    Toleration,
    Volume,
    VolumeMount,
)
from lightkube.models.meta_v1 import LabelSelector, ObjectMeta, OwnerReference
from lightkube.models.rbac_v1 import RoleRef, Subject
from lightkube.resources.apps_v1 import Deployment
from lightkube.resources.core_v1 import Service, ServiceAccount
from lightkube.resources.rbac_authorization_v1 import RoleBinding

from clrk.api.workerpool import WORKER_CLUSTER_ROLE

POOL_LABEL = "clrk.apoxy.dev/workerpool"
FINALIZER = "clrk.apoxy.dev/worker-workload"
DISPATCH_PORT = 7070
DATA_DIR = "/var/lib/clrk/worker"
MIN_GRACE_SECONDS = 30
MAX_GRACE_SECONDS = 3600
DRAIN_MARGIN_SECONDS = 15
API_VERSION = "clrk.apoxy.dev/v1alpha1"


@dataclass(frozen=True)
class WorkloadSettings:
    """What the controller manager knows that a pool does not say: the worker image of
    its own version."""

    default_image: str


def workload_name(pool: str) -> str:
    return f"{pool}-workers"


def grace_seconds(timeouts: Iterable[float]) -> int:
    """Long enough for the longest execution the pool may run to finish while the worker
    drains, within [30 s, 1 h]."""
    longest = max(timeouts, default=0.0)
    return max(MIN_GRACE_SECONDS,
               min(MAX_GRACE_SECONDS, math.ceil(longest) + DRAIN_MARGIN_SECONDS))


def _meta(pool: dict[str, Any], name: str) -> ObjectMeta:
    md = pool["metadata"]
    return ObjectMeta(
        name=name, namespace=md["namespace"],
        labels={POOL_LABEL: md["name"], "app.kubernetes.io/name": "clrk",
                "app.kubernetes.io/component": "worker"},
        ownerReferences=[OwnerReference(apiVersion=API_VERSION, kind="WorkerPool",
                                        name=md["name"], uid=md["uid"], controller=True)])


def _downward(name: str, path: str) -> EnvVar:
    return EnvVar(name=name, valueFrom=EnvVarSource(fieldRef=ObjectFieldSelector(fieldPath=path)))


def _model(cls: Any, doc: dict[str, Any]) -> Any:
    """A typed model from the pool's free-form field (lightkube's from_dict is untyped)."""
    return cls.from_dict(doc)


def _resources(template: dict[str, Any]) -> ResourceRequirements | None:
    res = template.get("resources")
    if not res:
        return None
    keep = ("cpu", "memory")  # an agent's pids limit has no meaning for the worker pod
    limits = {k: str(v) for k, v in (res.get("limits") or {}).items() if k in keep and v}
    requests = {k: str(v) for k, v in (res.get("requests") or {}).items() if k in keep and v}
    return ResourceRequirements(limits=limits or None, requests=requests or None)


def container(pool: dict[str, Any], settings: WorkloadSettings) -> Container:
    md, template = pool["metadata"], pool["spec"].get("template") or {}
    probe = HTTPGetAction(path="/healthz", port=DISPATCH_PORT)
    return Container(
        name="worker",
        image=template.get("image") or settings.default_image,
        imagePullPolicy=template.get("imagePullPolicy"),
        # The image's entrypoint is `clrk`; the worker dispatches on the pod's address,
        # which it advertises in its heartbeats.
        args=["worker", f"--pool={md['name']}", f"--pool-namespace={md['namespace']}",
              "--name=$(POD_NAME)", "--host=$(POD_IP)", f"--port={DISPATCH_PORT}",
              f"--data-dir={DATA_DIR}"],
        env=[_downward("POD_NAME", "metadata.name"),
             _downward("POD_NAMESPACE", "metadata.namespace"),
             _downward("POD_IP", "status.podIP"),
             *(EnvVar(name=e["name"], value=e.get("value", ""))
               for e in template.get("env") or [])],
        ports=[ContainerPort(name="dispatch", containerPort=DISPATCH_PORT, protocol="TCP")],
        readinessProbe=Probe(httpGet=probe, periodSeconds=5),
        livenessProbe=Probe(httpGet=probe, initialDelaySeconds=30, periodSeconds=10,
                            failureThreshold=6),
        resources=_resources(template),
        securityContext=SecurityContext(
            privileged=True, seccompProfile=SeccompProfile(type="Unconfined"),
            appArmorProfile=AppArmorProfile(type="Unconfined")),
        volumeMounts=[VolumeMount(name="data", mountPath=DATA_DIR)],
    )


def deployment(pool: dict[str, Any], settings: WorkloadSettings, grace: int) -> Deployment:
    name, template = pool["metadata"]["name"], pool["spec"].get("template") or {}
    selector = {POOL_LABEL: name}
    pull = [LocalObjectReference(name=r["name"]) for r in template.get("imagePullSecrets")
            or []]
    return Deployment(
        metadata=_meta(pool, workload_name(name)),
        spec=DeploymentSpec(
            replicas=int(pool["spec"].get("replicas", 1)),
            selector=LabelSelector(matchLabels=selector),
            template=PodTemplateSpec(
                metadata=ObjectMeta(labels={**selector, "app.kubernetes.io/name": "clrk",
                                            "app.kubernetes.io/component": "worker"}),
                spec=PodSpec(
                    serviceAccountName=workload_name(name),
                    imagePullSecrets=pull or None,
                    terminationGracePeriodSeconds=grace,
                    nodeSelector=template.get("nodeSelector"),
                    tolerations=[_model(Toleration, t) for t in template["tolerations"]]
                    if template.get("tolerations") else None,
                    affinity=_model(Affinity, template["affinity"])
                    if template.get("affinity") else None,
                    containers=[container(pool, settings)],
                    volumes=[Volume(name="data", emptyDir=EmptyDirVolumeSource())],
                ),
            ),
        ),
    )


def service(pool: dict[str, Any]) -> Service:
    """Headless: the scheduler dispatches to each worker's own address, never through a
    load-balanced one; the Service names the pool's workers for DNS and operators."""
    name = pool["metadata"]["name"]
    return Service(metadata=_meta(pool, workload_name(name)), spec=ServiceSpec(
        clusterIP="None", selector={POOL_LABEL: name},
        ports=[ServicePort(name="dispatch", port=DISPATCH_PORT, targetPort=DISPATCH_PORT,
                           protocol="TCP")]))


def service_account(pool: dict[str, Any]) -> ServiceAccount:
    return ServiceAccount(metadata=_meta(pool, workload_name(pool["metadata"]["name"])))


def role_binding(pool: dict[str, Any]) -> RoleBinding:
    md = pool["metadata"]
    return RoleBinding(
        metadata=_meta(pool, workload_name(md["name"])),
        roleRef=RoleRef(apiGroup="rbac.authorization.k8s.io", kind="ClusterRole",
                        name=WORKER_CLUSTER_ROLE),
        subjects=[Subject(kind="ServiceAccount", name=workload_name(md["name"]),
                          namespace=md["namespace"])])


def render(pool: dict[str, Any], settings: WorkloadSettings, grace: int) -> list[Any]:
    """In apply order: the account, its binding, the Service, the Deployment."""
    return [service_account(pool), role_binding(pool), service(pool),
            deployment(pool, settings, grace)]
