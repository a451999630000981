"""Test images built without Docker, and the local registry they are pushed to.

Images are built from a recipe (files to place, image config) into OCI layers and
cached under ~/.cache/clrk-test/ keyed by the recipe's hash, then pushed over the
OCI distribution API to a `docker-registry` on 127.0.0.1 that the test session starts.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.processes import terminate

CACHE = Path(os.environ.get("CLRK_TEST_CACHE", Path.home() / ".cache" / "clrk-test"))
BUSYBOX = Path("/usr/bin/busybox")
APPLETS = ("sh", "echo", "cat", "wc", "sleep", "env", "head", "tr", "ls", "true", "false",
           "printf", "dd", "yes", "id", "mkdir", "rm", "test", "[", "grep", "sed", "cut", "kill",
           "ps", "seq", "sort", "uniq", "wget", "timeout", "nc")


@dataclass
class Layer:
    """Entries of one layer: path -> file bytes, or (type, target) for links and dirs."""

    files: dict[str, bytes | tuple[str, str]] = field(default_factory=dict)

    def tar(self) -> bytes:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for name in sorted(self.files):
                value = self.files[name]
                info = tarfile.TarInfo(name)
                info.mtime = 0
                if isinstance(value, bytes):
                    info.size = len(value)
                    info.mode = 0o755
                    tar.addfile(info, io.BytesIO(value))
                    continue
                kind, target = value
                if kind == "symlink":
                    info.type, info.linkname = tarfile.SYMTYPE, target
                elif kind == "hardlink":
                    info.type, info.linkname = tarfile.LNKTYPE, target
                elif kind == "dir":
                    info.type, info.mode = tarfile.DIRTYPE, int(target or "755", 8)
                elif kind == "chardev":
                    info.type, info.devmajor, info.devminor = tarfile.CHRTYPE, 1, 3
                tar.addfile(info)
        return gzip.compress(buf.getvalue(), mtime=0)


@dataclass
class Recipe:
    name: str
    layers: list[Layer]
    config: dict[str, Any]
    architecture: str = "amd64"

    def key(self) -> str:
        h = hashlib.sha256(json.dumps(self.config, sort_keys=True).encode())
        for layer in self.layers:
            for name in sorted(layer.files):
                h.update(name.encode())
                v = layer.files[name]
                h.update(v if isinstance(v, bytes) else "\0".join(v).encode())
        return h.hexdigest()[:16]


@dataclass
class BuiltImage:
    config: bytes
    layers: list[bytes]

    @staticmethod
    def digest(data: bytes) -> str:
        return "sha256:" + hashlib.sha256(data).hexdigest()

    def manifest(self) -> bytes:
        return json.dumps({
            "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": self.digest(self.config), "size": len(self.config)},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                        "digest": self.digest(layer), "size": len(layer)}
                       for layer in self.layers],
        }).encode()


def build(recipe: Recipe) -> BuiltImage:
    """Build (or load from the cache) the image a recipe describes."""
    out = CACHE / f"{recipe.name}-{recipe.key()}"
    if (out / "config.json").exists():
        n = len(list(out.glob("layer-*.tar.gz")))
        return BuiltImage((out / "config.json").read_bytes(),
                          [(out / f"layer-{i}.tar.gz").read_bytes() for i in range(n)])
    layers = [layer.tar() for layer in recipe.layers]
    config = json.dumps({
        "architecture": recipe.architecture, "os": "linux", "config": recipe.config,
        "rootfs": {"type": "layers", "diff_ids": [
            "sha256:" + hashlib.sha256(gzip.decompress(layer)).hexdigest()
            for layer in layers]},
    }).encode()
    tmp = out.with_suffix(".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for i, layer in enumerate(layers):
        (tmp / f"layer-{i}.tar.gz").write_bytes(layer)
    (tmp / "config.json").write_bytes(config)
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return BuiltImage(config, layers)


def busybox_layer() -> Layer:
    files: dict[str, bytes | tuple[str, str]] = {"bin/busybox": BUSYBOX.read_bytes()}
    for applet in APPLETS:
        files[f"bin/{applet}"] = ("symlink", "busybox")
    files["tmp"] = ("dir", "1777")
    files["etc/passwd"] = b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534::/:/bin/sh\n"
    files["etc/ssl/certs/ca-certificates.crt"] = b""
    return Layer(files)


def busybox_recipe(**config: Any) -> Recipe:
    base = {"Env": ["PATH=/bin", "IMAGE_ONLY=from-image-env"], "Cmd": ["echo", "from-cmd"]}
    return Recipe("busybox", [busybox_layer()], {**base, **config})


class Registry:
    """A docker-registry on 127.0.0.1, for the test session."""

    def __init__(self, root: Path) -> None:
        self.root = root
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.host = f"127.0.0.1:{self.port}"
        config = root / "config.yml"
        root.mkdir(parents=True, exist_ok=True)
        config.write_text(
            f"version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n"
            f"    rootdirectory: {root / 'data'}\nhttp:\n  addr: {self.host}\n")
        self.proc = subprocess.Popen(["docker-registry", "serve", str(config)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://{self.host}/v2/", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("docker-registry did not start")

    def stop(self) -> None:
        terminate(self.proc, 10)

    def _put_blob(self, repo: str, data: bytes) -> None:
        digest = BuiltImage.digest(data)
        base = f"http://{self.host}/v2/{repo}"
        if httpx.head(f"{base}/blobs/{digest}").status_code == 200:
            return
        r = httpx.post(f"{base}/blobs/uploads/")
        r.raise_for_status()
        location = r.headers["location"]
        if location.startswith("/"):
            location = f"http://{self.host}{location}"
        sep = "&" if "?" in location else "?"
        r = httpx.put(f"{location}{sep}digest={digest}", content=data,
                      headers={"Content-Type": "application/octet-stream"})
        r.raise_for_status()

    def _put_manifest(self, repo: str, ref: str, body: bytes, media: str) -> str:
        r = httpx.put(f"http://{self.host}/v2/{repo}/manifests/{ref}", content=body,
                      headers={"Content-Type": media})
        r.raise_for_status()
        return BuiltImage.digest(body)

    def push(self, repo: str, tag: str, image: BuiltImage) -> str:
        """Push and return the manifest digest; the reference is ``{host}/{repo}:{tag}``."""
        for blob in (image.config, *image.layers):
            self._put_blob(repo, blob)
        return self._put_manifest(repo, tag, image.manifest(),
                                  "application/vnd.oci.image.manifest.v1+json")

    def push_index(self, repo: str, tag: str, images: dict[str, BuiltImage]) -> str:
        """A multi-platform index: architecture -> image."""
        manifests = []
        for arch, image in images.items():
            digest = self.push(repo, f"{tag}-{arch}", image)
            body = image.manifest()
            manifests.append({"mediaType": "application/vnd.oci.image.manifest.v1+json",
                              "digest": digest, "size": len(body),
                              "platform": {"os": "linux", "architecture": arch}})
        index = json.dumps({"schemaVersion": 2,
                            "mediaType": "application/vnd.oci.image.index.v1+json",
                            "manifests": manifests}).encode()
        return self._put_manifest(repo, tag, index, "application/vnd.oci.image.index.v1+json")


def start_registry(root: Path) -> Iterator[Registry]:
    reg = Registry(root)
    try:
        yield reg
    finally:
        reg.stop()


PYTHON_RECIPE = {"suite": "bookworm", "variant": "minbase",
                 "include": ["python3", "python3-venv", "ca-certificates", "curl", "jq"],
                 "mirror": "http://deb.debian.org/debian",
                 # Installed offline into /opt/venv from wheels downloaded on the host.
                 "wheels": ["openai==3.51.0", "anthropic==2.10.0", "mcp==2.3.0",
                            "google-genai==3.4.0", "opentelemetry-sdk==1.45.2",
                            "opentelemetry-exporter-otlp-proto-http==1.45.2"],
                 # The layer's mtimes are 0 (reproducible), which makes every timestamp
                 # .pyc stale: Python would recompile the stdlib at each start (the rootfs
                 # is read-only). Hash-based .pycs do not depend on mtimes.
                 "pyc": "unchecked-hash",  # forced (-f) over the timestamp ones
                 "version": 6}
_PRUNE = ("usr/share/doc", "usr/share/man", "usr/share/info", "usr/share/locale",
          "var/cache/apt", "var/lib/apt/lists", "var/log")


def _tar_dir(root: Path) -> bytes:
    """A reproducible gzip'd tar of a directory, without device nodes (the sandbox's /dev is
    a tmpfs of its own)."""
    buf = io.BytesIO()

    def clean(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
        if info.ischr() or info.isblk():
            return None
        info.mtime = 0
        info.uname = info.gname = ""
        return info

    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for child in sorted(root.iterdir()):
            tar.add(child, arcname=child.name, filter=clean)
    return gzip.compress(buf.getvalue(), compresslevel=1, mtime=0)


def _install_wheels(rootfs: Path, wheels: Path, requirements: list[str]) -> None:
    """A venv at /opt/venv with ``requirements``: wheels fetched by the host's pip (the
    only index this machine reaches), installed inside the rootfs with no network."""
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--only-binary=:all:",
                    "--python-version", "3.11", "--implementation", "cp",
                    "--platform", "manylinux2014_x86_64", "--platform", "manylinux_2_28_x86_64",
                    "-d", str(wheels), *requirements], check=True)
    inside = rootfs / "tmp" / "wheels"
    shutil.copytree(wheels, inside)
    for cmd in (["python3", "-m", "venv", "/opt/venv"],
                ["/opt/venv/bin/pip", "install", "-q", "--no-index", "--no-cache-dir",
                 "--find-links", "/tmp/wheels", *requirements]):
        subprocess.run([shutil.which("chroot") or "/usr/sbin/chroot", str(rootfs), *cmd],
                       check=True,
                       env={"PATH": "/usr/bin:/bin", "HOME": "/root"})
    shutil.rmtree(inside)


def python_base() -> BuiltImage:
    """Debian minbase with python3, by debootstrap; built once per recipe and cached."""
    key = hashlib.sha256(json.dumps(PYTHON_RECIPE, sort_keys=True).encode()).hexdigest()[:16]
    out = CACHE / f"python-{key}"
    if (out / "config.json").exists():
        return BuiltImage((out / "config.json").read_bytes(),
                          [(out / "layer-0.tar.gz").read_bytes()])
    work = CACHE / f"python-{key}.build"
    shutil.rmtree(work, ignore_errors=True)
    rootfs = work / "rootfs"
    rootfs.mkdir(parents=True)
    subprocess.run(
        ["debootstrap", f"--variant={PYTHON_RECIPE['variant']}",
         f"--include={','.join(PYTHON_RECIPE['include'])}",  # type: ignore[arg-type]
         str(PYTHON_RECIPE["suite"]), str(rootfs), str(PYTHON_RECIPE["mirror"])],
        check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _install_wheels(rootfs, work / "wheels", list(PYTHON_RECIPE["wheels"]))  # type: ignore[call-overload]
    # Not checked: a few files in the stdlib are not meant to compile (lib2to3's tests).
    subprocess.run([shutil.which("chroot") or "/usr/sbin/chroot", str(rootfs), "python3",
                    "-m", "compileall", "-q", "-f", "-j0", "--invalidation-mode",
                    str(PYTHON_RECIPE["pyc"]), "/usr/lib/python3.11",
                    "/usr/lib/python3/dist-packages", "/opt/venv/lib"],
                   stdout=subprocess.DEVNULL, env={"PATH": "/usr/bin:/bin", "HOME": "/root"})
    for rel in _PRUNE:
        shutil.rmtree(rootfs / rel, ignore_errors=True)
    layer = _tar_dir(rootfs)
    config = json.dumps({
        "architecture": "amd64", "os": "linux",
        "config": {"Env": ["PATH=/usr/local/bin:/usr/bin:/bin", "IMAGE_ONLY=python-image"],
                   "Cmd": ["python3"]},
        "rootfs": {"type": "layers",
                   "diff_ids": ["sha256:" + hashlib.sha256(gzip.decompress(layer)).hexdigest()]},
    }).encode()
    (work / "layer-0.tar.gz").write_bytes(layer)
    (work / "config.json").write_bytes(config)
    shutil.rmtree(rootfs)
    shutil.rmtree(out, ignore_errors=True)
    work.rename(out)
    return BuiltImage(config, [layer])


def with_layer(base: BuiltImage, layer: Layer, **config: Any) -> BuiltImage:
    """``base`` plus one layer and config changes (like a Dockerfile COPY + ENTRYPOINT)."""
    doc = json.loads(base.config)
    extra = layer.tar()
    doc["config"].update(config)
    doc["rootfs"]["diff_ids"].append("sha256:" + hashlib.sha256(gzip.decompress(extra))
                                     .hexdigest())
    return BuiltImage(json.dumps(doc).encode(), [*base.layers, extra])


def word_count_image() -> BuiltImage:
    """The spec's word-count agent: python3 /agent.py as the ENTRYPOINT."""
    agent = (Path(__file__).resolve().parents[1] / "examples" / "word-count" / "agent.py")
    return with_layer(python_base(), Layer({"agent.py": agent.read_bytes()}),
                      Entrypoint=["python3", "/agent.py"])


def oci_layout(image: BuiltImage, out: Path, tag: str) -> Path:
    """``image`` as an OCI image layout directory (what `skopeo copy … oci:DIR` makes),
    for `clrk image import`. A history entry per layer is added where the config has
    none: builders (buildah) count layers by their history."""
    doc = json.loads(image.config)
    doc.setdefault("history", [{"created_by": "clrk test image"} for _ in image.layers])
    image = BuiltImage(json.dumps(doc).encode(), image.layers)
    blobs = out / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)
    for blob in (*image.layers, image.config, image.manifest()):
        (blobs / BuiltImage.digest(blob).removeprefix("sha256:")).write_bytes(blob)
    manifest = image.manifest()
    (out / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
    (out / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": BuiltImage.digest(manifest), "size": len(manifest),
        "annotations": {"org.opencontainers.image.ref.name": tag}}]}))
    return out


def python_slim_stand_in() -> BuiltImage:
    """What the examples' ``FROM python:3.12-slim`` gets in the tests (no Docker Hub
    here): the Debian python base, whose /opt/venv (the SDKs the examples install)
    answers as ``python3`` and ``pip`` in /usr/local/bin, as the real image's do. Their
    ``RUN pip install …`` then finds everything installed and needs no network."""
    wrappers: dict[str, bytes | tuple[str, str]] = {
        f"usr/local/bin/{name}": f'#!/bin/sh\nexec /opt/venv/bin/{name} "$@"\n'.encode()
        for name in ("python3", "python", "pip", "pip3")}
    return with_layer(python_base(), Layer(wrappers))  # files are 0755
