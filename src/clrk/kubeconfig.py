"""Kubeconfig files that clrk writes for itself, kubectl and any Kubernetes client, and
how a clrk process finds its API server: such a file, or a pod's ServiceAccount."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import httpx
import yaml
from lightkube import KubeConfig
from lightkube.config.client_adapter import AsyncClient as auth_client
from lightkube.config.client_adapter import ConnectionParams
from lightkube.config.kubeconfig import SingleConfig

DEFAULT_HOME = Path(os.environ.get("CLRK_HOME", Path.home() / ".clrk"))
HOST_KUBECONFIG = "kubeconfig.host"
CONTEXT = "clrk-dev"


def render(server: str, ca_pem: bytes, token: str, context: str = CONTEXT,
           namespace: str = "default") -> str:
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": context,
                "cluster": {
                    "server": server,
                    "certificate-authority-data": base64.b64encode(ca_pem).decode(),
                },
            }
        ],
        "users": [{"name": context, "user": {"token": token}}],
        "contexts": [
            {
                "name": context,
                "context": {"cluster": context, "user": context, "namespace": namespace},
            }
        ],
        "current-context": context,
        "preferences": {},
    }
    return yaml.safe_dump(doc, sort_keys=False)


def write(path: Path, server: str, ca_pem: bytes, token: str, context: str = CONTEXT) -> None:
    """Write atomically with mode 0600: the file carries a bearer token."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(render(server, ca_pem, token, context))
    os.replace(tmp, path)


def api_config(path: Path | None) -> SingleConfig:
    """The API server and credentials of the kubeconfig at ``path``, or, without one, of
    the pod this process runs in (its ServiceAccount's token, re-read when the kubelet
    rotates it, and the cluster CA)."""
    config = KubeConfig.from_file(str(path)) if path is not None \
        else KubeConfig.from_service_account()
    single = config.get()
    if single is None:
        raise ValueError(f"{path}: the kubeconfig has no current context")
    return single


def http_client(config: SingleConfig, timeout: float) -> httpx.AsyncClient:
    """An HTTP client for the API server's non-object endpoints (heartbeats, reports),
    with the config's TLS trust and credentials, whatever their kind."""
    return auth_client(config, ConnectionParams(timeout=httpx.Timeout(timeout)))
