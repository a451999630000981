"""A real Kubernetes API server for the cluster tests, as controller-runtime's envtest
runs one: etcd and kube-apiserver (built from the Go module proxy by
``scripts/build-kube.sh``, cached by version) on this host, no kubelet, so no pod ever
runs. RBAC authorization, ServiceAccount token signing, a bearer token for a test
admin, and the aggregation layer configured (front-proxy client certificate and the
requestheader CA and headers), so an aggregated API server can be put behind it.

kube-apiserver refuses loopback addresses as the endpoints of its own Service and of
an aggregated API's Service, so the session adds two TEST-NET-1 addresses (one for
kube-apiserver to advertise, one for the aggregated server) and removes them afterwards.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import ssl
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives import serialization

from clrk import pki
from tests.processes import terminate

ROOT = Path(__file__).resolve().parents[1]
LABEL = "lo:clrktest"
KUBE_ADDRESS = "192.0.2.1"  # what kube-apiserver advertises (its Service's endpoint)
AGGREGATED_ADDRESS = "192.0.2.2"  # where an aggregated API server listens
SERVICE_RANGE = "10.0.0.0/24"


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


def build_binaries() -> tuple[Path, float]:
    """The directory with etcd and kube-apiserver, and how long getting it took."""
    start = time.monotonic()
    out = subprocess.run(["bash", str(ROOT / "scripts" / "build-kube.sh")],
                         capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"scripts/build-kube.sh failed:\n{out.stderr[-4000:]}")
    return Path(out.stdout.strip().splitlines()[-1]), time.monotonic() - start


@contextlib.contextmanager
def test_addresses() -> Iterator[None]:
    """The two addresses, on the loopback interface (this kernel has no dummy links),
    removed whatever happens. They are not loopback addresses, which is what counts."""
    def remove() -> None:
        for address in (KUBE_ADDRESS, AGGREGATED_ADDRESS):
            subprocess.run(["ip", "addr", "del", f"{address}/32", "dev", "lo"],
                           capture_output=True, check=False)

    remove()
    try:
        for address in (KUBE_ADDRESS, AGGREGATED_ADDRESS):
            subprocess.run(["ip", "addr", "add", f"{address}/32", "dev", "lo", "label",
                            LABEL], check=True)
        yield
    finally:
        remove()


@dataclass
class KubeCluster:
    """A running etcd + kube-apiserver and what a client needs to reach it."""

    directory: Path
    url: str
    ca: pki.KeyPair
    front_proxy_ca: pki.KeyPair
    admin_token: str
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def ca_file(self) -> Path:
        return self.directory / "ca.crt"

    def kubeconfig(self, token: str | None = None, name: str = "admin") -> Path:
        """A kubeconfig for the admin, or for any bearer token (a ServiceAccount's)."""
        path = self.directory / f"kubeconfig-{name}"
        path.write_text(
            "apiVersion: v1\nkind: Config\n"
            f"clusters:\n- name: test\n  cluster:\n    server: {self.url}\n"
            f"    certificate-authority: {self.ca_file}\n"
            f"users:\n- name: {name}\n  user:\n    token: {token or self.admin_token}\n"
            f"contexts:\n- name: test\n  context:\n    cluster: test\n    user: {name}\n"
            "current-context: test\n")
        path.chmod(0o600)
        return path

    def kubectl(self, *args: str, input: str | None = None, check: bool = True,
                kubeconfig: Path | None = None, timeout: float = 60
                ) -> subprocess.CompletedProcess[str]:
        r = subprocess.run(["kubectl", "--kubeconfig", str(kubeconfig or self.kubeconfig()),
                            *args], input=input, capture_output=True, text=True,
                           timeout=timeout, check=False)
        if check and r.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed:\n{r.stdout}\n{r.stderr}")
        return r

    def ready(self) -> bool:
        ctx = ssl.create_default_context(cafile=str(self.ca_file))
        req = urllib.request.Request(f"{self.url}/readyz",
                                     headers={"Authorization": f"Bearer {self.admin_token}"})
        try:
            with urllib.request.urlopen(req, context=ctx, timeout=2) as r:
                return bool(r.status == 200)
        except OSError:
            return False

    def stop(self) -> None:
        for proc in reversed(self.processes):
            terminate(proc, 15)


def _write(path: Path, data: bytes) -> Path:
    pki.write_private(path, data)
    return path


def start_cluster(directory: Path, binaries: Path) -> KubeCluster:
    """etcd, then kube-apiserver; waits for /readyz. The caller provides the addresses
    (:func:`test_addresses`) and calls :meth:`KubeCluster.stop`."""
    directory.mkdir(parents=True, exist_ok=True)
    ca = pki.generate_ca("clrk-test-kubernetes-ca")
    front = pki.generate_ca("clrk-test-front-proxy-ca")
    serving = pki.issue_leaf(ca, ["kubernetes", "localhost", "127.0.0.1", KUBE_ADDRESS,
                                  "10.0.0.1", "kubernetes.default.svc"])
    proxy_client = pki.issue_leaf(front, ["front-proxy-client"], server=False)
    sa = pki.generate_ca("service-accounts")  # only its key is used: the token signer
    sa_key = serialization.load_pem_private_key(sa.key_pem, password=None)
    sa_pub = sa_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    files = {name: _write(directory / name, data) for name, data in {
        "ca.crt": ca.cert_pem, "ca.key": ca.key_pem, "serving.crt": serving.cert_pem,
        "serving.key": serving.key_pem, "front-proxy-ca.crt": front.cert_pem,
        "front-proxy-client.crt": proxy_client.cert_pem,
        "front-proxy-client.key": proxy_client.key_pem, "sa.key": sa.key_pem,
        "sa.pub": sa_pub}.items()}
    admin_token = secrets.token_hex(24)
    tokens = _write(directory / "tokens.csv",
                    f'{admin_token},test-admin,test-admin-uid,"system:masters"\n'.encode())
    etcd_port, etcd_peer, port = free_port(), free_port(), free_port()
    log = (directory / "etcd.log").open("ab")
    etcd = subprocess.Popen(
        [str(binaries / "etcd"), "--data-dir", str(directory / "etcd"),
         "--listen-client-urls", f"http://127.0.0.1:{etcd_port}",
         "--advertise-client-urls", f"http://127.0.0.1:{etcd_port}",
         "--listen-peer-urls", f"http://127.0.0.1:{etcd_peer}",
         "--initial-advertise-peer-urls", f"http://127.0.0.1:{etcd_peer}",
         "--initial-cluster", f"default=http://127.0.0.1:{etcd_peer}",
         "--unsafe-no-fsync"],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    cluster = KubeCluster(directory, f"https://127.0.0.1:{port}", ca, front, admin_token,
                          [etcd])
    log = (directory / "kube-apiserver.log").open("ab")
    cluster.processes.append(subprocess.Popen(
        [str(binaries / "kube-apiserver"),
         f"--etcd-servers=http://127.0.0.1:{etcd_port}",
         "--bind-address=0.0.0.0", f"--secure-port={port}",
         f"--advertise-address={KUBE_ADDRESS}",
         f"--tls-cert-file={files['serving.crt']}",
         f"--tls-private-key-file={files['serving.key']}",
         f"--client-ca-file={files['ca.crt']}",
         f"--service-cluster-ip-range={SERVICE_RANGE}",
         "--service-account-issuer=https://kubernetes.default.svc",
         f"--service-account-key-file={files['sa.pub']}",
         f"--service-account-signing-key-file={files['sa.key']}",
         "--authorization-mode=RBAC",
         f"--token-auth-file={tokens}",
         f"--requestheader-client-ca-file={files['front-proxy-ca.crt']}",
         "--requestheader-allowed-names=front-proxy-client",
         "--requestheader-username-headers=X-Remote-User",
         "--requestheader-group-headers=X-Remote-Group",
         "--requestheader-extra-headers-prefix=X-Remote-Extra-",
         f"--proxy-client-cert-file={files['front-proxy-client.crt']}",
         f"--proxy-client-key-file={files['front-proxy-client.key']}",
         "--enable-aggregator-routing=true",
         "--allow-privileged=true",
         f"--cert-dir={directory / 'certs'}"],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        env={**os.environ}))
    deadline = time.monotonic() + 120
    while not cluster.ready():
        for proc, name in zip(cluster.processes, ("etcd", "kube-apiserver"), strict=True):
            if proc.poll() is not None:
                cluster.stop()
                tail = (directory / f"{name}.log").read_text(errors="replace")[-4000:]
                raise RuntimeError(f"{name} exited {proc.returncode}:\n{tail}")
        if time.monotonic() > deadline:
            cluster.stop()
            raise RuntimeError("kube-apiserver did not become ready:\n" + (
                directory / "kube-apiserver.log").read_text(errors="replace")[-4000:])
        time.sleep(0.2)
    return cluster
