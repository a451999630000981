"""A Debian base image made with debootstrap, for machines that reach a Debian mirror but
not Docker Hub: the examples build ``FROM`` it there (``--build-arg BASE=...``).

The root filesystem is made once per recipe (suite, mirror, packages) and kept as a
layer tarball under ``~/.cache/clrk/bases/``; the image is that one layer, written as an
OCI layout that :meth:`ImageStore.import_image` takes in.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import subprocess
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "clrk" / "bases"
# What the examples need: Python for the agents, curl and jq for the shell ones, CA certs
# for HTTPS (the worker mounts the gateway's CA over the bundle).
PACKAGES = ("python3", "ca-certificates", "curl", "jq")
# Files a sandboxed agent never needs, left out of the layer (apt lists, docs, caches).
_PRUNE = ("var/lib/apt/lists", "var/cache/apt", "usr/share/doc", "usr/share/man",
          "usr/share/locale", "usr/share/info")


class BootstrapError(Exception):
    """debootstrap failed or is missing; the message says what to do."""


@dataclass(frozen=True)
class Recipe:
    suite: str = "bookworm"
    mirror: str = "http://deb.debian.org/debian"
    packages: tuple[str, ...] = field(default=PACKAGES)

    def key(self) -> str:
        doc = json.dumps([self.suite, self.mirror, sorted(self.packages), _PRUNE])
        return hashlib.sha256(doc.encode()).hexdigest()[:16]


def _layer(recipe: Recipe, log: Path) -> Path:
    """The root filesystem as a gzipped tar, from the cache or made now."""
    CACHE.mkdir(parents=True, exist_ok=True)
    log.parent.mkdir(parents=True, exist_ok=True)
    out = CACHE / f"debian-{recipe.suite}-{recipe.key()}.tar.gz"
    if out.exists():
        return out
    if shutil.which("debootstrap") is None:
        raise BootstrapError("debootstrap is not installed (apt-get install debootstrap)")
    work = CACHE / f".{out.name}.build"
    shutil.rmtree(work, ignore_errors=True)
    rootfs = work / "rootfs"
    rootfs.mkdir(parents=True)
    try:
        with log.open("ab") as sink:
            done = subprocess.run(
                ["debootstrap", "--variant=minbase", f"--include={','.join(recipe.packages)}",
                 recipe.suite, str(rootfs), recipe.mirror],
                stdout=sink, stderr=subprocess.STDOUT, check=False)
        if done.returncode != 0:
            raise BootstrapError(f"debootstrap of {recipe.suite} from {recipe.mirror} failed "
                                 f"(exit {done.returncode}); see {log}")
        for rel in _PRUNE:
            shutil.rmtree(rootfs / rel, ignore_errors=True)
        tmp = work / "layer.tar.gz"
        with gzip.GzipFile(tmp, "wb", compresslevel=1, mtime=0) as gz, \
                tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for child in sorted(rootfs.iterdir()):
                tar.add(child, arcname=child.name, filter=_portable)
        tmp.rename(out)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return out


def _portable(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
    """No device nodes (a sandbox's /dev is its own) and no build times in the layer."""
    if info.ischr() or info.isblk():
        return None
    info.mtime = 0
    info.uname = info.gname = ""
    return info


def _blob(blobs: Path, data: bytes) -> tuple[str, int]:
    digest = hashlib.sha256(data).hexdigest()
    (blobs / digest).write_bytes(data)
    return f"sha256:{digest}", len(data)


def oci_layout(recipe: Recipe, out: Path, log: Path) -> Path:
    """The base image as an OCI layout directory (one layer, ``python3`` on the PATH)."""
    layer = _layer(recipe, log).read_bytes()
    blobs = out / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)
    layer_digest, layer_size = _blob(blobs, layer)
    config = json.dumps({
        "architecture": "amd64", "os": "linux",
        "config": {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                   "Cmd": ["/bin/bash"]},
        "rootfs": {"type": "layers",
                   "diff_ids": ["sha256:" + hashlib.sha256(gzip.decompress(layer)).hexdigest()]},
        "history": [{"created_by": f"debootstrap --variant=minbase {recipe.suite} "
                                   f"({', '.join(recipe.packages)})"}],
    }).encode()
    config_digest, config_size = _blob(blobs, config)
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": config_digest, "size": config_size},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": layer_digest, "size": layer_size}],
    }).encode()
    manifest_digest, manifest_size = _blob(blobs, manifest)
    (out / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
    (out / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": manifest_digest, "size": manifest_size}]}))
    return out
