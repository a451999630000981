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
import zlib
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


def rootfs_layer(recipe: Recipe, log: Path) -> Path:
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
                tar.add(child, arcname=child.name, filter=portable)
        tmp.rename(out)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return out


def portable(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
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


def _digests(path: Path) -> tuple[str, str, int]:
    """(digest, diff_id, size) of a gzipped layer file, read in chunks (a layer may be
    hundreds of MiB), remembered beside it as ``<file>.digests``."""
    memo = path.with_name(path.name + ".digests")
    stat = path.stat()
    if memo.exists():
        digest, diff_id, size, mtime = memo.read_text().split()
        if int(size) == stat.st_size and int(mtime) == stat.st_mtime_ns:
            return digest, diff_id, int(size)
    packed, unpacked = hashlib.sha256(), hashlib.sha256()
    inflate = zlib.decompressobj(wbits=31)
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            packed.update(chunk)
            unpacked.update(inflate.decompress(chunk))
    unpacked.update(inflate.flush())
    digest, diff_id = f"sha256:{packed.hexdigest()}", f"sha256:{unpacked.hexdigest()}"
    memo.write_text(f"{digest} {diff_id} {stat.st_size} {stat.st_mtime_ns}")
    return digest, diff_id, stat.st_size


def _layer_blob(blobs: Path, layer: Path | bytes) -> tuple[str, str, int]:
    """The layer stored in the layout (a file is hard-linked when it can be); returns
    (digest, diff_id, size)."""
    if isinstance(layer, bytes):
        digest, size = _blob(blobs, layer)
        return digest, "sha256:" + hashlib.sha256(gzip.decompress(layer)).hexdigest(), size
    digest, diff_id, size = _digests(layer)
    target = blobs / digest.split(":", 1)[1]
    if not target.exists():
        try:
            os.link(layer, target)
        except OSError:
            shutil.copyfile(layer, target)
    return digest, diff_id, size


def write_layout(out: Path, layers: list[Path | bytes], config: dict[str, object],
                 tag: str | None = None) -> Path:
    """An OCI image layout of gzipped ``layers`` (lowest first; files or bytes) and the
    image ``config`` (its ``config``, ``history``, ...; the rootfs diff_ids are computed
    here)."""
    blobs = out / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)
    described = [_layer_blob(blobs, layer) for layer in layers]
    doc = {"architecture": "amd64", "os": "linux", **config,
           "rootfs": {"type": "layers", "diff_ids": [d[1] for d in described]}}
    config_digest, config_size = _blob(blobs, json.dumps(doc, sort_keys=True).encode())
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": config_digest, "size": config_size},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": digest, "size": size} for digest, _, size in described],
    }).encode()
    manifest_digest, manifest_size = _blob(blobs, manifest)
    entry: dict[str, object] = {"mediaType": "application/vnd.oci.image.manifest.v1+json",
                                "digest": manifest_digest, "size": manifest_size}
    if tag:
        entry["annotations"] = {"org.opencontainers.image.ref.name": tag}
    (out / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
    (out / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [entry]}))
    return out


def oci_layout(recipe: Recipe, out: Path, log: Path) -> Path:
    """The base image as an OCI layout directory (one layer, ``python3`` on the PATH)."""
    return write_layout(out, [rootfs_layer(recipe, log)], {
        "config": {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                   "Cmd": ["/bin/bash"]},
        "history": [{"created_by": f"debootstrap --variant=minbase {recipe.suite} "
                                   f"({', '.join(recipe.packages)})"}]})
