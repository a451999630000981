"""Shared fixtures: a real `clrk dev` process and real kubectl against it."""

from __future__ import annotations

import contextlib
import os
import signal
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.images import Registry, start_registry
from tests.kube_cluster import KubeCluster, build_binaries, start_cluster, test_addresses

ROOT = Path(__file__).resolve().parents[1]
CLRK = str(Path(sys.executable).parent / "clrk")
KUBECTL = "kubectl"


@dataclass
class DevServer:
    """A running `clrk dev` and the kubeconfig it wrote."""

    proc: subprocess.Popen[bytes]
    data_dir: Path
    log: Path

    @property
    def kubeconfig(self) -> Path:
        return self.data_dir / "kubeconfig.host"

    @property
    def url(self) -> str:
        doc = yaml.safe_load(self.kubeconfig.read_text())
        return str(doc["clusters"][0]["cluster"]["server"])

    @property
    def ingress(self) -> str:
        return (self.data_dir / "ingress.url").read_text().strip()

    @property
    def token(self) -> str:
        return (self.data_dir / "token").read_text().strip()

    @property
    def ca_file(self) -> Path:
        return self.data_dir / "pki" / "ca.crt"

    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_file))

    def kubectl(self, *args: str, input: str | None = None, check: bool = True,
                timeout: float = 60) -> subprocess.CompletedProcess[str]:
        r = subprocess.run(
            [KUBECTL, "--kubeconfig", str(self.kubeconfig), *args],
            input=input, capture_output=True, text=True, timeout=timeout, check=False,
        )
        if check and r.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed:\n{r.stdout}\n{r.stderr}")
        return r

    def clrk(self, *args: str, input: str | None = None, check: bool = True,
             timeout: float = 60, env: dict[str, str] | None = None
             ) -> subprocess.CompletedProcess[str]:
        r = subprocess.run(
            [CLRK, "--kubeconfig", str(self.kubeconfig), *args],
            input=input, capture_output=True, text=True, timeout=timeout, check=False,
            env={**os.environ, **(env or {})},
        )
        if check and r.returncode != 0:
            raise AssertionError(f"clrk {' '.join(args)} failed:\n{r.stdout}\n{r.stderr}")
        return r

    def image(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """`clrk image …` on this instance's image store and registry."""
        r = subprocess.run([CLRK, "image", *args, "--data-dir", str(self.data_dir)],
                           capture_output=True, text=True, timeout=600, check=False)
        if check and r.returncode != 0:
            raise AssertionError(f"clrk image {' '.join(args)} failed:\n{r.stdout}\n{r.stderr}")
        return r

    @property
    def registry(self) -> str:
        """The address of its dev registry (host:port)."""
        return (self.data_dir / "registry.addr").read_text().strip()

    def ready(self) -> bool:
        if not self.kubeconfig.exists():
            return False
        try:
            with urllib.request.urlopen(f"{self.url}/readyz", context=self.ssl_context(),
                                        timeout=2) as r:
                return bool(r.status == 200)
        except OSError:
            return False

    def wait_for_worker(self, timeout: float = 60) -> None:
        """Until the default pool reports its one worker ready."""
        deadline = time.monotonic() + timeout
        while self.kubectl("get", "wp", "default", "-o", "jsonpath={.status.readyReplicas}",
                           check=False).stdout != "1":
            assert time.monotonic() < deadline, "the worker never became ready"
            time.sleep(0.3)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def start_dev(data_dir: Path, *extra: str, env: dict[str, str] | None = None,
              workers: int = 0) -> DevServer:
    """Start `clrk dev` and wait until it serves; raise with its log if it dies."""
    data_dir.mkdir(parents=True, exist_ok=True)
    log = data_dir.parent / f"{data_dir.name}-dev.log"
    kubeconfig = data_dir / "kubeconfig.host"
    kubeconfig.unlink(missing_ok=True)
    offset = log.stat().st_size if log.exists() else 0  # a restart appends to the log
    # Its registry on any free port (5001, the default, may be another instance's).
    registry = [] if {"--registry-port", "--no-registry"} & set(extra) else [
        "--registry-port", "0"]
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [CLRK, "dev", "--data-dir", str(data_dir), "--port", "0", "--no-tui",
             "--workers", str(workers), *registry, *extra],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})}, cwd=ROOT,
        )
    server = DevServer(proc, data_dir, log)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"clrk dev exited {proc.returncode}:\n{log.read_text()}")
        # Ready once it says so: after its --apply manifests and --secret Secrets.
        if "clrk dev is running" in log.read_bytes()[offset:].decode(errors="replace") \
                and server.ready():
            return server
        time.sleep(0.1)
    server.stop()
    raise RuntimeError(f"clrk dev did not become ready:\n{log.read_text()}")


def remove_image_store(data_dir: Path) -> None:
    """What `clrk image build` left under a test's data dir: buildah's containers and
    their mounts (a build's RUN steps mount the image's rootfs)."""
    store = data_dir / "images"
    subprocess.run(["buildah", "--root", str(store / "storage"), "--runroot",
                    str(store / "run"), "rm", "--all"], capture_output=True, check=False)
    mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()
              if str(store) in line.split()[1]]
    for mount in sorted(mounts, reverse=True):
        subprocess.run(["umount", "-l", mount], check=False)
    assert not mounts, f"buildah left mounts: {mounts}"


@pytest.fixture
def dev_server(tmp_path: Path) -> Iterator[DevServer]:
    server = start_dev(tmp_path / "clrk")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def shared_dev_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevServer]:
    """One server for a module whose tests use distinct object names."""
    server = start_dev(tmp_path_factory.mktemp("dev") / "clrk")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """A docker-registry on 127.0.0.1 for the whole session."""
    yield from start_registry(tmp_path_factory.mktemp("registry"))


@pytest.fixture(scope="session")
def kube_cluster(tmp_path_factory: pytest.TempPathFactory,
                 pytestconfig: pytest.Config) -> Iterator[KubeCluster]:
    """etcd + kube-apiserver for the session (binaries built once per version)."""
    binaries, built = build_binaries()
    with test_addresses():
        start = time.monotonic()
        cluster = start_cluster(tmp_path_factory.mktemp("kube"), binaries)
        started = time.monotonic() - start
        capture = pytestconfig.pluginmanager.get_plugin("capturemanager")
        with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
            print(f"\nkube cluster: binaries in {built:.1f} s ({binaries}), "
                  f"etcd + kube-apiserver ready in {started:.1f} s", flush=True)
        try:
            yield cluster
        finally:
            cluster.stop()
