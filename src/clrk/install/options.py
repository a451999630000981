"""What an installation is made of: the options a user chooses, the serving certificate, and
the names and labels every rendered object shares (so rendering, applying, waiting and
upgrading agree on them).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from clrk import __version__
from clrk.api.workerpool import WORKER_CLUSTER_ROLE, worker_image

RBACMode = Literal["scoped", "cluster-admin"]
TLSMode = Literal["self-signed", "cert-manager"]
RBAC_MODES: tuple[RBACMode, ...] = ("scoped", "cluster-admin")
TLS_MODES: tuple[TLSMode, ...] = ("self-signed", "cert-manager")

APP = "clrk"
COMPONENT = "controller-manager"
CONTROLLER = "clrk-controller-manager"
WORKER = WORKER_CLUSTER_ROLE  # the workers' ClusterRole, and the install's account
APISERVER_SERVICE = "clrk-apiserver"
INGRESS_SERVICE = "clrk-ingress"
TLS_SECRET = "clrk-apiserver-tls"
DATA_CLAIM = "clrk-data"
API_GROUP = "clrk.apoxy.dev"
API_VERSION = "v1alpha1"
APISERVICE = f"{API_VERSION}.{API_GROUP}"
WORKERPOOL = "default"
WORKERPOOL_NAMESPACE = "default"

NAME_LABEL = "app.kubernetes.io/name"
VERSION_LABEL = "app.kubernetes.io/version"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
COMPONENT_LABEL = "app.kubernetes.io/component"
TLS_HASH_ANNOTATION = "clrk.apoxy.dev/tls-sha256"

SECURE_PORT = 8443
INGRESS_PORT = 8080
DATA_DIR = "/var/lib/clrk"
TLS_DIR = "/etc/clrk/tls"
CLICKHOUSE_URL_ENV = "CLRK_CLICKHOUSE_URL"  # the controller-manager's --clickhouse-url
CLICKHOUSE_URL_KEY = "url"  # the key of that Secret


def controller_image(version: str) -> str:
    """The controller-manager image published for ``version``."""
    return f"ghcr.io/apoxy-dev/clrk-controller-manager:v{version}"


@dataclass(frozen=True)
class ServingCert:
    """The clrk API server's serving certificate, its key, and the CA kube-aggregator trusts."""

    ca_pem: bytes
    cert_pem: bytes
    key_pem: bytes


@dataclass(frozen=True)
class InstallOptions:
    """Everything the manifests depend on. Images left empty follow ``version``."""

    namespace: str = "clrk"
    version: str = __version__
    controller_image: str = ""
    worker_image: str = ""
    image_pull_secret: str | None = None
    # A Secret (in the namespace) whose ``url`` is a ClickHouse server's HTTP interface:
    # telemetry goes there instead of chDB on the controller-manager's volume.
    clickhouse_secret: str | None = None
    workers: int = 1
    storage_class: str | None = None
    rbac: RBACMode = "scoped"
    tls: TLSMode = "self-signed"
    # Required with tls="self-signed" (clrk.install.tls makes or reads it); unused with
    # cert-manager, which writes the Secret itself.
    serving: ServingCert | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if not self.controller_image:
            object.__setattr__(self, "controller_image", controller_image(self.version))
        if not self.worker_image:
            object.__setattr__(self, "worker_image", worker_image(self.version))
        if self.rbac not in RBAC_MODES:
            raise ValueError(f"rbac must be one of {', '.join(RBAC_MODES)}, not {self.rbac!r}")
        if self.tls not in TLS_MODES:
            raise ValueError(f"tls must be one of {', '.join(TLS_MODES)}, not {self.tls!r}")
        if self.workers < 0:
            raise ValueError(f"workers must not be negative, not {self.workers}")


def labels(options: InstallOptions, component: str | None = None) -> dict[str, str]:
    """The labels every rendered object carries (and the component's, when it has one)."""
    out = {NAME_LABEL: APP, VERSION_LABEL: options.version, MANAGED_BY_LABEL: APP}
    if component is not None:
        out[COMPONENT_LABEL] = component
    return out


def selector() -> dict[str, str]:
    """The controller-manager pods, as the Deployment and both Services select them."""
    return {NAME_LABEL: APP, COMPONENT_LABEL: COMPONENT}


def serving_dns_names(namespace: str) -> list[str]:
    """The names kube-aggregator and in-cluster clients reach the API Service by."""
    base = APISERVER_SERVICE
    return [base, f"{base}.{namespace}", f"{base}.{namespace}.svc",
            f"{base}.{namespace}.svc.cluster.local"]
