"""clrk installed into the session's test cluster, its controller manager running as the
Deployment's pod would."""

from __future__ import annotations

import base64
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.clrk_on_kube import NAMESPACE, ControllerManager, get_json, install_and_run
from tests.kube_cluster import KubeCluster


@dataclass
class ClrkOnKube:
    cluster: KubeCluster
    admin: Path
    manager: ControllerManager
    installs: list[str]  # what each `clrk install` printed, in order
    directory: Path

    def client(self) -> httpx.Client:
        """A client of the clrk API server itself (not through kube-apiserver), trusting
        its serving CA, as a port-forward to its Service would reach it."""
        secret = get_json(self.cluster, "secret", "clrk-apiserver-tls", "-n", NAMESPACE)
        ctx = ssl.create_default_context(cadata=base64.b64decode(
            secret["data"]["ca.crt"]).decode())
        ctx.check_hostname = False  # the certificate names the Service, not this address
        return httpx.Client(base_url=self.manager.url, verify=ctx, timeout=30)

    def direct(self, token: str, method: str, path: str, body: bytes = b"",
               headers: dict[str, str] | None = None) -> httpx.Response:
        """A request straight to the clrk API server (not through kube-apiserver)."""
        with self.client() as c:
            return c.request(method, path, content=body,
                             headers={"Authorization": f"Bearer {token}",
                                      "Content-Type": "application/json", **(headers or {})})


@pytest.fixture(scope="session")
def clrk_on_kube(kube_cluster: KubeCluster,
                 tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClrkOnKube]:
    directory = tmp_path_factory.mktemp("clrk-on-kube")
    manager, installs = install_and_run(kube_cluster, directory)
    try:
        yield ClrkOnKube(kube_cluster, kube_cluster.kubeconfig(), manager, installs,
                         directory)
    finally:
        manager.stop()
