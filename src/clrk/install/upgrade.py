"""What re-applying reads from the cluster first, so that `clrk upgrade` (and a repeated
`clrk install`) keep what is already there and never ask for an impossible change.

- The version installed is the ``app.kubernetes.io/version`` label of the controller-manager
  Deployment; moving to an older one is refused unless asked for.
- Upgrade keeps the choices made at install time unless given again: the RBAC mode (which
  binding exists), the TLS mode (whether cert-manager injects the CA), the image pull secret,
  and the worker count of the ``default`` WorkerPool (someone may have scaled it since).
- A PersistentVolumeClaim's spec cannot change after creation, so its StorageClass is the
  claim's own once it exists: applying without the class clrk set before would try to unset
  it (server-side apply removes fields a manager stops applying) and fail.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
from lightkube import ApiError, Client
from lightkube.resources.apiregistration_v1 import APIService
from lightkube.resources.apps_v1 import Deployment
from lightkube.resources.core_v1 import PersistentVolumeClaim, Secret
from lightkube.resources.rbac_authorization_v1 import ClusterRoleBinding
from packaging.version import InvalidVersion, Version

from clrk.api.workerpool import WorkerPool
from clrk.client import FIELD_MANAGER, resource_class, to_dict
from clrk.install import InstallError
from clrk.install.manifests import INJECT_CA_ANNOTATION
from clrk.install.options import (
    APISERVICE,
    CLICKHOUSE_URL_ENV,
    CLICKHOUSE_URL_KEY,
    CONTROLLER,
    DATA_CLAIM,
    VERSION_LABEL,
    WORKERPOOL,
    WORKERPOOL_NAMESPACE,
    RBACMode,
    TLSMode,
)
from clrk.install.rbac import CLUSTER_ADMIN_BINDING


def _get(client: Client, res: Any, name: str, namespace: str | None,
         absent: tuple[int, ...] = (404,)) -> dict[str, Any] | None:
    try:
        return to_dict(client.get(res, name, namespace=namespace))
    except ApiError as err:
        if err.status.code in absent:
            return None
        raise
    except httpx.HTTPStatusError as err:  # a group nobody serves: a plain-text 404
        if err.response.status_code in absent:
            return None
        raise


def installed_version(client: Client, namespace: str) -> str | None:
    """The version installed in ``namespace`` ("" when unlabelled), or None when clrk is not
    installed there."""
    dep = _get(client, Deployment, CONTROLLER, namespace)
    if dep is None:
        return None
    return str(((dep.get("metadata") or {}).get("labels") or {}).get(VERSION_LABEL) or "")


def require_installed(client: Client, namespace: str) -> str:
    """The installed version; :class:`InstallError` when nothing is installed."""
    version = installed_version(client, namespace)
    if version is None:
        raise InstallError(f"clrk is not installed in namespace {namespace}: run `clrk install`")
    return version


@dataclass(frozen=True)
class Installed:
    """The choices an installation was made with, as the cluster shows them."""

    version: str
    rbac: RBACMode
    tls: TLSMode
    image_pull_secret: str | None
    clickhouse_secret: str | None = None


def read_installed(client: Client, namespace: str) -> Installed:
    """What is installed in ``namespace``; :class:`InstallError` when nothing is."""
    version = require_installed(client, namespace)
    dep = _get(client, Deployment, CONTROLLER, namespace) or {}
    pod = ((dep.get("spec") or {}).get("template") or {}).get("spec") or {}
    pulls = [p.get("name") for p in pod.get("imagePullSecrets") or [] if p.get("name")]
    env = [e for c in pod.get("containers") or [] for e in c.get("env") or []]
    clickhouse = next((((e.get("valueFrom") or {}).get("secretKeyRef") or {}).get("name")
                       for e in env if e.get("name") == CLICKHOUSE_URL_ENV), None)
    admin = _get(client, ClusterRoleBinding, CLUSTER_ADMIN_BINDING, None)
    svc = _get(client, APIService, APISERVICE, None) or {}
    annotations = (svc.get("metadata") or {}).get("annotations") or {}
    return Installed(
        version=version,
        rbac="cluster-admin" if admin is not None else "scoped",
        tls="cert-manager" if INJECT_CA_ANNOTATION in annotations else "self-signed",
        image_pull_secret=str(pulls[0]) if pulls else None,
        clickhouse_secret=str(clickhouse) if clickhouse else None,
    )


def is_downgrade(installed: str, new: str) -> bool:
    """Whether ``new`` is older than ``installed`` (False when either is not a version)."""
    try:
        return Version(new) < Version(installed)
    except InvalidVersion:
        return False


def check_version(installed: str, new: str, allow_downgrade: bool = False) -> None:
    """Refuse to move from ``installed`` to an older ``new`` unless ``allow_downgrade``."""
    if allow_downgrade:
        return
    try:
        old_v, new_v = Version(installed), Version(new)
    except InvalidVersion:
        raise InstallError(
            f"cannot compare the installed version {installed or '(none)'!r} with {new!r}: "
            "pass --allow-downgrade to upgrade anyway") from None
    if new_v < old_v:
        raise InstallError(f"{new} is older than the installed {installed}: pass "
                           "--allow-downgrade to downgrade")


def current_workers(client: Client) -> int | None:
    """``spec.replicas`` of the ``default`` WorkerPool, or None when there is none (or the
    clrk API is not served right now)."""
    pool = _get(client, resource_class(WorkerPool), WORKERPOOL, WORKERPOOL_NAMESPACE,
                absent=(404, 503))
    replicas = ((pool or {}).get("spec") or {}).get("replicas")
    return replicas if isinstance(replicas, int) else None


def _applied_by_clrk(obj: dict[str, Any], *path: str) -> bool:
    """Whether the ``clrk`` field manager's apply owns the field at ``path``."""
    for entry in (obj.get("metadata") or {}).get("managedFields") or []:
        if entry.get("manager") != FIELD_MANAGER or entry.get("operation") != "Apply":
            continue
        node: Any = entry.get("fieldsV1") or {}
        for part in path:
            node = node.get(f"f:{part}") if isinstance(node, dict) else None
        if node is not None:
            return True
    return False


def storage_class_for(client: Client, namespace: str, wanted: str | None) -> str | None:
    """The storageClassName to apply to the state claim: ``wanted`` for a new claim; for an
    existing one, its own class when clrk set it (else none: a default class the cluster
    filled in belongs to nobody). A different ``wanted`` is an error: it cannot change."""
    pvc = _get(client, PersistentVolumeClaim, DATA_CLAIM, namespace)
    if pvc is None:
        return wanted
    live = (pvc.get("spec") or {}).get("storageClassName")
    if wanted is not None and wanted != live:
        raise InstallError(
            f"persistentvolumeclaim {namespace}/{DATA_CLAIM} has storage class "
            f"{live or '(none)'}, and a claim's storage class cannot change: leave out "
            "--storage-class, or move the data and delete the claim first")
    if wanted is None and live is not None and _applied_by_clrk(pvc, "spec",
                                                                "storageClassName"):
        return str(live)
    return wanted


def check_clickhouse_secret(client: Client, namespace: str, name: str) -> None:
    """--clickhouse-secret names a Secret of the namespace with a non-empty ``url`` (the
    controller-manager checks the URL itself when it starts)."""
    secret = _get(client, Secret, name, namespace)
    if secret is None:
        raise InstallError(f"--clickhouse-secret: secret {namespace}/{name} does not exist; "
                           f"create it with `kubectl create secret generic {name} -n "
                           f"{namespace} --from-literal={CLICKHOUSE_URL_KEY}=http://…`")
    data = secret.get("data") or {}
    if not data.get(CLICKHOUSE_URL_KEY):
        keys = ", ".join(sorted(data)) or "none"
        raise InstallError(f"--clickhouse-secret: secret {namespace}/{name} has no "
                           f"{CLICKHOUSE_URL_KEY!r} key (keys: {keys})")
