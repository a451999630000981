"""Kubeconfig files that clrk writes for itself, kubectl and any Kubernetes client."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import yaml

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


def read(path: Path, context: str | None = None) -> tuple[str, bytes, str]:
    """(server URL, CA PEM, bearer token) of a token-based kubeconfig, as clrk writes."""
    doc = yaml.safe_load(path.read_text())
    ctx_name = context or doc.get("current-context")
    ctx = next(c["context"] for c in doc["contexts"] if c["name"] == ctx_name)
    cluster = next(c["cluster"] for c in doc["clusters"] if c["name"] == ctx["cluster"])
    user = next(u["user"] for u in doc["users"] if u["name"] == ctx["user"])
    ca = base64.b64decode(cluster.get("certificate-authority-data", ""))
    return cluster["server"], ca, user.get("token", "")
