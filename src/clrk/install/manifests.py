"""The objects `clrk install` puts on a cluster, rendered from options alone (no I/O).

Everything is built from lightkube's typed models, so a misspelt field is an error here and not
a silently dropped key on the server; kinds lightkube does not know (cert-manager's, clrk's own)
are lightkube generic resources. The order of :func:`render` is the order of applying: what an
object refers to comes before it (the Namespace, then ServiceAccounts, roles before bindings,
the Secret and claim before the Deployment that mounts them, the Service before the APIService
that points at it). The ``default`` WorkerPool is apart (:func:`render_workerpool`): it can be
applied only once the APIService it is served through is available.
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import yaml
from lightkube.generic_resource import create_namespaced_resource
from lightkube.models.apiregistration_v1 import APIServiceSpec, ServiceReference
from lightkube.models.apps_v1 import DeploymentSpec, DeploymentStrategy
from lightkube.models.core_v1 import (
    Container,
    ContainerPort,
    EnvVar,
    EnvVarSource,
    HTTPGetAction,
    LocalObjectReference,
    ObjectFieldSelector,
    PersistentVolumeClaimSpec,
    PersistentVolumeClaimVolumeSource,
    PodSpec,
    PodTemplateSpec,
    Probe,
    ResourceRequirements,
    SecretKeySelector,
    SecretVolumeSource,
    ServicePort,
    ServiceSpec,
    Volume,
    VolumeMount,
    VolumeResourceRequirements,
)
from lightkube.models.meta_v1 import LabelSelector, ObjectMeta
from lightkube.resources.apiregistration_v1 import APIService
from lightkube.resources.apps_v1 import Deployment
from lightkube.resources.core_v1 import (
    Namespace,
    PersistentVolumeClaim,
    Secret,
    Service,
    ServiceAccount,
)

from clrk.api.workerpool import WorkerPool
from clrk.client import resource_class, to_dict
from clrk.install import InstallError
from clrk.install.options import (
    API_GROUP,
    API_VERSION,
    APISERVER_SERVICE,
    APISERVICE,
    CLICKHOUSE_URL_ENV,
    CLICKHOUSE_URL_KEY,
    COMPONENT,
    CONTROLLER,
    DATA_CLAIM,
    DATA_DIR,
    INGRESS_PORT,
    INGRESS_SERVICE,
    SECURE_PORT,
    TLS_DIR,
    TLS_HASH_ANNOTATION,
    TLS_SECRET,
    WORKER,
    WORKERPOOL,
    WORKERPOOL_NAMESPACE,
    InstallOptions,
    labels,
    selector,
    serving_dns_names,
)
from clrk.install.rbac import render_rbac

CERT_MANAGER = "cert-manager.io"
Issuer = create_namespaced_resource(CERT_MANAGER, "v1", "Issuer", "issuers")
Certificate = create_namespaced_resource(CERT_MANAGER, "v1", "Certificate", "certificates")
ISSUER = "clrk-selfsigned"
CERTIFICATE = APISERVER_SERVICE
INJECT_CA_ANNOTATION = "cert-manager.io/inject-ca-from"
DATA_SIZE = "10Gi"


def _meta(options: InstallOptions, name: str, namespace: str | None = None,
          component: str | None = None, annotations: dict[str, str] | None = None
          ) -> ObjectMeta:
    return ObjectMeta(name=name, namespace=namespace, labels=labels(options, component),
                      annotations=annotations)


def controller_args(namespace: str, worker_image: str) -> list[str]:
    """The controller-manager container's arguments (the image's entrypoint is `clrk`)."""
    return [
        "controller-manager",
        f"--data-dir={DATA_DIR}",
        "--bind-address=0.0.0.0",
        f"--secure-port={SECURE_PORT}",
        f"--ingress-port={INGRESS_PORT}",
        f"--tls-cert-dir={TLS_DIR}",
        "--leader-elect",
        f"--leader-election-namespace={namespace}",
        f"--worker-image={worker_image}",
    ]


def namespace(options: InstallOptions) -> Namespace:
    return Namespace(metadata=_meta(options, options.namespace))


def service_accounts(options: InstallOptions) -> list[ServiceAccount]:
    ns = options.namespace
    # Worker pods are created by the WorkerPool controller with this account; the pull secret
    # on the account reaches them without the controller having to know it.
    pull = ([LocalObjectReference(name=options.image_pull_secret)]
            if options.image_pull_secret else None)
    return [
        ServiceAccount(metadata=_meta(options, CONTROLLER, ns)),
        ServiceAccount(metadata=_meta(options, WORKER, ns), imagePullSecrets=pull),
    ]


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def serving_objects(options: InstallOptions) -> list[Any]:
    """The serving certificate Secret, or the cert-manager objects that write it."""
    ns = options.namespace
    if options.tls == "cert-manager":
        issuer = Issuer(apiVersion=f"{CERT_MANAGER}/v1", kind="Issuer",
                        metadata=_meta(options, ISSUER, ns), spec={"selfSigned": {}})
        certificate = Certificate(
            apiVersion=f"{CERT_MANAGER}/v1", kind="Certificate",
            metadata=_meta(options, CERTIFICATE, ns),
            spec={
                "secretName": TLS_SECRET,
                "secretTemplate": {"labels": labels(options)},
                "commonName": serving_dns_names(ns)[2],
                "dnsNames": serving_dns_names(ns),
                "usages": ["server auth", "digital signature"],
                "privateKey": {"algorithm": "ECDSA", "size": 256},
                "issuerRef": {"name": ISSUER, "kind": "Issuer", "group": CERT_MANAGER},
            },
        )
        return [issuer, certificate]
    serving = options.serving
    if serving is None:
        raise InstallError("--tls self-signed needs the serving certificate: "
                           "clrk.install.tls.serving_for makes or reads it")
    return [Secret(
        metadata=_meta(options, TLS_SECRET, ns),
        type="kubernetes.io/tls",
        data={"tls.crt": _b64(serving.cert_pem), "tls.key": _b64(serving.key_pem),
              "ca.crt": _b64(serving.ca_pem)},
    )]


def data_claim(options: InstallOptions) -> PersistentVolumeClaim:
    """The controller manager's state and telemetry (SQLite and the telemetry store)."""
    return PersistentVolumeClaim(
        metadata=_meta(options, DATA_CLAIM, options.namespace),
        spec=PersistentVolumeClaimSpec(
            accessModes=["ReadWriteOnce"],
            resources=VolumeResourceRequirements(requests={"storage": DATA_SIZE}),
            storageClassName=options.storage_class,
        ),
    )


def tls_hash(options: InstallOptions) -> str | None:
    """The sha256 of the serving certificate (None with cert-manager: not known here)."""
    if options.tls != "self-signed" or options.serving is None:
        return None
    return hashlib.sha256(options.serving.cert_pem).hexdigest()


def _downward(name: str, path: str) -> EnvVar:
    return EnvVar(name=name, valueFrom=EnvVarSource(fieldRef=ObjectFieldSelector(fieldPath=path)))


def _probe(path: str, initial_delay: int | None = None) -> Probe:
    return Probe(httpGet=HTTPGetAction(path=path, port=SECURE_PORT, scheme="HTTPS"),
                 initialDelaySeconds=initial_delay)


def deployment(options: InstallOptions) -> Deployment:
    """The controller manager: API server, scheduler, telemetry and controllers in one pod.
    One replica and Recreate: its state is a ReadWriteOnce volume that two pods cannot share."""
    digest = tls_hash(options)
    # A new certificate changes the pod template, so the pod restarts and serves it.
    annotations = {TLS_HASH_ANNOTATION: digest} if digest else None
    container = Container(
        name=COMPONENT,
        image=options.controller_image,
        args=controller_args(options.namespace, options.worker_image),
        env=[_downward("POD_NAME", "metadata.name"),
             _downward("POD_NAMESPACE", "metadata.namespace"),
             *([EnvVar(name=CLICKHOUSE_URL_ENV, valueFrom=EnvVarSource(
                 secretKeyRef=SecretKeySelector(name=options.clickhouse_secret,
                                                key=CLICKHOUSE_URL_KEY)))]
               if options.clickhouse_secret else [])],
        ports=[ContainerPort(name="https", containerPort=SECURE_PORT, protocol="TCP"),
               ContainerPort(name="ingress", containerPort=INGRESS_PORT, protocol="TCP")],
        readinessProbe=_probe("/readyz"),
        livenessProbe=_probe("/livez", initial_delay=10),
        resources=ResourceRequirements(requests={"cpu": "100m", "memory": "256Mi"},
                                       limits={"memory": "1Gi"}),
        volumeMounts=[VolumeMount(name="data", mountPath=DATA_DIR),
                      VolumeMount(name="tls", mountPath=TLS_DIR, readOnly=True)],
    )
    pull = ([LocalObjectReference(name=options.image_pull_secret)]
            if options.image_pull_secret else None)
    pod_labels = {**labels(options, COMPONENT), **selector()}
    return Deployment(
        metadata=_meta(options, CONTROLLER, options.namespace, COMPONENT),
        spec=DeploymentSpec(
            replicas=1,
            strategy=DeploymentStrategy(type="Recreate"),
            selector=LabelSelector(matchLabels=selector()),
            template=PodTemplateSpec(
                metadata=ObjectMeta(labels=pod_labels, annotations=annotations),
                spec=PodSpec(
                    serviceAccountName=CONTROLLER,
                    imagePullSecrets=pull,
                    terminationGracePeriodSeconds=30,
                    containers=[container],
                    volumes=[
                        Volume(name="data", persistentVolumeClaim=PersistentVolumeClaimVolumeSource(
                            claimName=DATA_CLAIM)),
                        Volume(name="tls", secret=SecretVolumeSource(secretName=TLS_SECRET)),
                    ],
                ),
            ),
        ),
    )


def services(options: InstallOptions) -> list[Service]:
    """The API (behind the APIService) and the agent ingress, both on the controller pod."""
    ns = options.namespace
    return [
        Service(metadata=_meta(options, APISERVER_SERVICE, ns, COMPONENT),
                spec=ServiceSpec(selector=selector(), ports=[ServicePort(
                    name="https", port=443, targetPort=SECURE_PORT, protocol="TCP")])),
        Service(metadata=_meta(options, INGRESS_SERVICE, ns, COMPONENT),
                spec=ServiceSpec(selector=selector(), ports=[ServicePort(
                    name="http", port=80, targetPort=INGRESS_PORT, protocol="TCP")])),
    ]


def apiservice(options: InstallOptions) -> APIService:
    """clrk.apoxy.dev/v1alpha1 served by kube-aggregator from the clrk-apiserver Service."""
    ca_bundle: str | None = None
    annotations: dict[str, str] | None = None
    if options.tls == "cert-manager":
        # cert-manager's cainjector fills caBundle from the Certificate's Secret.
        annotations = {INJECT_CA_ANNOTATION: f"{options.namespace}/{CERTIFICATE}"}
    elif options.serving is not None:
        ca_bundle = _b64(options.serving.ca_pem)
    return APIService(
        metadata=_meta(options, APISERVICE, annotations=annotations),
        spec=APIServiceSpec(
            group=API_GROUP, version=API_VERSION,
            service=ServiceReference(namespace=options.namespace, name=APISERVER_SERVICE,
                                     port=443),
            caBundle=ca_bundle, groupPriorityMinimum=1000, versionPriority=15,
        ),
    )


def render(options: InstallOptions) -> list[Any]:
    """Every object but the WorkerPool, in apply order."""
    return [
        namespace(options),
        *service_accounts(options),
        *render_rbac(options),
        *serving_objects(options),
        data_claim(options),
        deployment(options),
        *services(options),
        apiservice(options),
    ]


def render_workerpool(options: InstallOptions) -> Any:
    """The ``default`` WorkerPool in namespace ``default``. Only the fields clrk sets are in it
    (replicas and the worker image), so applying it never resets what a user changed with
    another field manager (maxExecutionsPerWorker, warmPool, ...)."""
    pool = WorkerPool.model_validate({
        "apiVersion": WorkerPool.kind_info.api_version,
        "kind": WorkerPool.kind_info.kind,
        "metadata": {"name": WORKERPOOL, "namespace": WORKERPOOL_NAMESPACE,
                     "labels": labels(options)},
        "spec": {"replicas": options.workers, "template": {"image": options.worker_image}},
    })
    body = pool.model_dump(mode="json", by_alias=True, exclude_unset=True, exclude_none=True)
    return resource_class(WorkerPool).from_dict(body)


def render_all(options: InstallOptions) -> list[Any]:
    """What `clrk install -o yaml` prints: :func:`render` and then the WorkerPool."""
    return [*render(options), render_workerpool(options)]


def documents(objects: list[Any]) -> list[dict[str, Any]]:
    """The objects as plain JSON-able dicts (apiVersion, kind and metadata first)."""
    out = []
    for obj in objects:
        d = to_dict(obj)
        head = {k: d.pop(k) for k in ("apiVersion", "kind", "metadata") if k in d}
        out.append({**head, **d})
    return out


def to_yaml(objects: list[Any]) -> str:
    """A multi-document YAML stream, as `kubectl apply -f -` reads it."""
    return yaml.safe_dump_all(documents(objects), sort_keys=False)
