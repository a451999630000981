"""clrk's own images, built without Docker by ``python -m clrk.oci.release`` (the bases
and the dependencies layer cached by recipe), pushed to a local docker-registry, and
checked as a cluster would run them: the controller-manager image's entrypoint, as its
user, against the test cluster until it answers its readiness probe; the worker image's
runsc, Envoy and iptables."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import ssl
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from clrk import __version__
from clrk.oci import release
from tests.clrk_on_kube import NAMESPACE, SERVICE_ACCOUNT, get_json
from tests.cluster.conftest import ClrkOnKube
from tests.images import Registry
from tests.kube_cluster import free_port

pytestmark = pytest.mark.cluster
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return release.build(ROOT, tmp_path_factory.mktemp("release"))


def _blob(layout: Path, digest: str) -> bytes:
    return (layout / "blobs" / "sha256" / digest.split(":", 1)[1]).read_bytes()


def _manifest(layout: Path) -> dict[str, Any]:
    index = json.loads((layout / "index.json").read_text())
    return dict(json.loads(_blob(layout, index["manifests"][0]["digest"])))


def _config(layout: Path) -> dict[str, Any]:
    return dict(json.loads(_blob(layout, _manifest(layout)["config"]["digest"])))


Unpack = Callable[[Path, Path], Path]


@pytest.fixture
def unpack() -> Iterator[Unpack]:
    """Unpacks an image's root file system, its layers applied in order (no whiteouts
    here), and removes it after the test: a gigabyte each, of no use once checked."""
    made: list[Path] = []

    def _unpack(layout: Path, dest: Path) -> Path:
        dest.mkdir(parents=True)
        made.append(dest)
        for layer in _manifest(layout)["layers"]:
            path = layout / "blobs" / "sha256" / layer["digest"].split(":", 1)[1]
            subprocess.run(["tar", "-xzf", str(path), "-C", str(dest)], check=True)
        return dest

    yield _unpack
    for dest in made:
        shutil.rmtree(dest)


def in_image(root: Path, script: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """``script`` in the image's root with /proc mounted, in a mount namespace of its
    own (the mount goes when it ends)."""
    return subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c",
         f"mount -t proc proc {root}/proc && mount --rbind /dev {root}/dev && "
         f"exec chroot {root} /bin/sh -c '{script}'"],
        capture_output=True, text=True, timeout=timeout, check=False)


def test_configs_say_entrypoint_user_and_version_and_builds_repeat(
        images: dict[str, Path], tmp_path: Path) -> None:
    for name, user in (("clrk-controller-manager", "65532:65532"), ("clrk-worker", "0:0")):
        config = _config(images[name])["config"]
        assert config["Entrypoint"] == ["/opt/clrk/bin/clrk"] and config["User"] == user
        assert config["Labels"]["org.opencontainers.image.version"] == __version__
        assert config["Labels"]["org.opencontainers.image.title"] == name
    # Both images share the dependencies and clrk layers; their bases differ.
    cm, worker = (_manifest(images[n])["layers"] for n in ("clrk-controller-manager",
                                                           "clrk-worker"))
    assert cm[1:] == worker[1:] and cm[0] != worker[0]
    # The same checkout, lock and bases give the same images, byte for byte.
    again = release.build(ROOT, tmp_path / "again")
    for name, layout in images.items():
        assert (again[name] / "index.json").read_text() == \
            (layout / "index.json").read_text(), name


def test_pushed_to_a_registry(images: dict[str, Path], registry: Registry) -> None:
    for name, layout in images.items():
        release.push(layout, f"{registry.host}/apoxy-dev/{name}:v{__version__}",
                     insecure=True)
        r = httpx.get(f"http://{registry.host}/v2/apoxy-dev/{name}/manifests/v{__version__}",
                      headers={"Accept": "application/vnd.oci.image.manifest.v1+json"},
                      timeout=30)
        assert r.status_code == 200 and r.json()["layers"] == _manifest(layout)["layers"]


def test_the_worker_image_holds_runsc_envoy_and_iptables(images: dict[str, Path],
                                                         unpack: Unpack,
                                                         tmp_path: Path) -> None:
    root = unpack(images["clrk-worker"], tmp_path / "worker")
    envoy = "$(/opt/clrk/bin/python -c \"from clrk.egress.envoy.binary import envoy_binary; " \
            "print(envoy_binary())\")"
    done = in_image(root, f"runsc --version && {envoy} --version && iptables --version "
                          "&& ip -V && busybox true && /opt/clrk/bin/clrk --version && "
                          "/opt/clrk/bin/python -c \"import clrk.worker.main, "
                          "clrk.controlplane.assembly, clrk.cli.tui.app\"")
    assert done.returncode == 0, done.stderr
    assert "runsc version" in done.stdout and "1.40." in done.stdout
    assert "nf_tables" in done.stdout and f"clrk {__version__}" in done.stdout


def test_the_controller_manager_image_answers_its_readiness_probe(
        images: dict[str, Path], clrk_on_kube: ClrkOnKube, unpack: Unpack,
        tmp_path: Path) -> None:
    """The image's entrypoint, as the image's user, with what the pod would have mounted
    (the serving Secret, a ServiceAccount token): it serves, a follower of the Lease the
    installed controller manager holds, and its /readyz says 200."""
    cluster = clrk_on_kube.cluster
    root = unpack(images["clrk-controller-manager"], tmp_path / "cm")
    secret = get_json(cluster, "secret", "clrk-apiserver-tls", "-n", NAMESPACE)
    (root / "etc" / "clrk" / "tls").mkdir(parents=True)
    for key in ("tls.crt", "tls.key"):
        (root / "etc" / "clrk" / "tls" / key).write_bytes(
            base64.b64decode(secret["data"][key]))
    token = cluster.kubectl("create", "token", SERVICE_ACCOUNT, "-n", NAMESPACE,
                            "--duration=1h").stdout.strip()
    kube = yaml.safe_load(cluster.kubeconfig(token, "image-check").read_text())
    for entry in kube["clusters"]:  # the CA file is outside the image's root: inline it
        ca = Path(entry["cluster"].pop("certificate-authority")).read_bytes()
        entry["cluster"]["certificate-authority-data"] = base64.b64encode(ca).decode()
    (root / "etc" / "clrk" / "kube").write_text(yaml.safe_dump(kube))
    (root / "var" / "lib" / "clrk").mkdir(parents=True)
    os.chown(root / "var" / "lib" / "clrk", 65532, 65532)
    for path in (root / "etc" / "clrk").rglob("*"):
        os.chown(path, 65532, 65532)
    port = free_port()
    config = _config(images["clrk-controller-manager"])["config"]
    argv = [*config["Entrypoint"], "controller-manager", "--data-dir=/var/lib/clrk",
            "--bind-address=127.0.0.1", f"--secure-port={port}",
            f"--ingress-port={free_port()}", "--tls-cert-dir=/etc/clrk/tls",
            "--kubeconfig=/etc/clrk/kube", f"--leader-election-namespace={NAMESPACE}",
            "--identity=image-check"]
    log = (tmp_path / "cm.log").open("wb")
    proc = subprocess.Popen(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c",
         f'mount -t proc proc {root}/proc && mount --rbind /dev {root}/dev && '
         f'exec chroot --userspec={config["User"]} '
         f'{root} env {" ".join(config["Env"])} HOME=/tmp ' + " ".join(argv)],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # as kubelet probes
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, (tmp_path / "cm.log").read_text()[-3000:]
            assert time.monotonic() < deadline, (tmp_path / "cm.log").read_text()[-3000:]
            try:
                with urllib.request.urlopen(f"https://127.0.0.1:{port}/readyz", context=ctx,
                                            timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                time.sleep(0.3)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, 15)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait()
        log.close()
