"""clrk's local image store: build from a Dockerfile, import, list and push, without a
Docker engine.

buildah does the work (``bud`` with chroot isolation: no daemon, no user namespaces, a
layer cache per Dockerfile step), with its storage under clrk's home so `clrk image ls`
shows clrk's images only; archives and OCI layouts are pushed straight by skopeo. Their
output streams to the user as progress; their failures become one line that says what to
do (a base image that cannot be pulled names `clrk image import`).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
from collections import deque
from dataclasses import dataclass
from pathlib import Path

DOCKER_HUB = "docker.io"


class ImageError(Exception):
    """A build, import or push that failed; the message is for the user as is."""


@dataclass(frozen=True)
class LocalImage:
    names: tuple[str, ...]
    id: str
    size: str  # as buildah says it ("127 MB")
    created: str


def normalize(name: str) -> str:
    """A reference as Docker reads it: ``python:3.12`` is ``docker.io/library/python:3.12``;
    a first component with a dot, a colon or ``localhost`` is a registry."""
    first, _, rest = name.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        return name
    if not rest:
        return f"{DOCKER_HUB}/library/{name}"
    return f"{DOCKER_HUB}/{name}"


def has_registry(name: str) -> bool:
    first, _, rest = name.partition("/")
    return bool(rest) and ("." in first or ":" in first or first == "localhost")


def is_loopback(registry: str) -> bool:
    host = registry.rsplit(":", 1)[0] if not registry.startswith("[") else \
        registry[1:registry.index("]")]
    return host in ("127.0.0.1", "localhost", "::1")


def transport(source: str) -> str:
    """The containers-image transport for a file, directory or reference the user named:
    an OCI layout directory, an OCI or `docker save` archive, or a registry reference."""
    if source.startswith(("docker://", "oci:", "oci-archive:", "docker-archive:",
                          "containers-storage:")):
        return source
    path = Path(source)
    if path.is_dir():
        if not (path / "oci-layout").exists():
            raise ImageError(f"{source} is a directory but not an OCI image layout "
                             "(no oci-layout file)")
        return f"oci:{path.resolve()}"
    if path.is_file():
        try:
            with tarfile.open(path) as tar:
                names = set(tar.getnames())
        except (tarfile.TarError, OSError) as err:
            raise ImageError(f"{source} is not an image archive: {err}") from err
        if "oci-layout" in names or "./oci-layout" in names:
            return f"oci-archive:{path.resolve()}"
        if "manifest.json" in names or "./manifest.json" in names:
            return f"docker-archive:{path.resolve()}"
        raise ImageError(f"{source} is a tar file but neither an OCI archive nor a "
                         "`docker save` archive")
    return f"docker://{source}"


def _explain(tail: str, what: str) -> str:
    """buildah's and skopeo's last words, made into advice."""
    lowered = tail.lower()
    unreachable = ("dial tcp", "no such host", "i/o timeout", "connection refused",
                   "network is unreachable", "temporary failure in name resolution",
                   "pinging container registry")
    if "creating build container" in lowered or "error determining starting point" in lowered \
            or ("pull" in lowered and "from" in lowered and any(u in lowered
                                                               for u in unreachable)):
        return (f"{what}: a base image is not in clrk's image store and cannot be pulled "
                f"({tail.strip().splitlines()[-1]}). Without internet, supply it with "
                "`clrk image import ARCHIVE --name NAME` (an archive from `docker save`, an "
                "OCI archive or layout), NAME being the FROM line's image")
    if any(u in lowered for u in unreachable):
        return f"{what}: the registry is unreachable ({tail.strip().splitlines()[-1]})"
    if "unauthorized" in lowered or "authentication required" in lowered:
        return (f"{what}: the registry refused the credentials ({tail.strip().splitlines()[-1]}); "
                "pass --creds USER:PASSWORD or --authfile")
    last = tail.strip().splitlines()[-1] if tail.strip() else "no output"
    return f"{what}: {last.removeprefix('Error: ').removeprefix('error: ')}"


@dataclass
class ImageStore:
    home: Path  # clrk's home (~/.clrk): the store is under images/
    dev_registry: str | None = None  # host:port of `clrk dev`'s registry, reached over HTTP
    progress: bool = True

    @property
    def root(self) -> Path:
        return self.home / "images"

    def _registries_conf(self) -> Path:
        """Short names resolve on Docker Hub, as with Docker; loopback registries (the dev
        registry among them) are reached over plain HTTP."""
        self.root.mkdir(parents=True, exist_ok=True)
        conf = self.root / "registries.conf"
        lines = ['unqualified-search-registries = ["docker.io"]', 'short-name-mode = "permissive"']
        for location in sorted({self.dev_registry or "", "localhost", "127.0.0.1"} - {""}):
            lines += ["", "[[registry]]", f'location = "{location}"', "insecure = true"]
        conf.write_text("\n".join(lines) + "\n")
        return conf

    def _env(self) -> dict[str, str]:
        return {**os.environ, "CONTAINERS_REGISTRIES_CONF": str(self._registries_conf()),
                "BUILDAH_ISOLATION": "chroot"}

    def _tool(self, name: str) -> str:
        found = shutil.which(name)
        if found is None:
            raise ImageError(f"{name} is not installed (apt-get install {name}); clrk builds "
                             "and pushes images with it")
        return found

    def _buildah(self, *args: str) -> list[str]:
        return [self._tool("buildah"), "--root", str(self.root / "storage"),
                "--runroot", str(self.root / "run"), *args]

    def _run(self, argv: list[str], what: str, stream: bool = True) -> str:
        """Run a tool; its output streams to stderr as progress (when asked) and its
        stdout is returned."""
        tail: deque[str] = deque(maxlen=40)
        with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
                              if stream else subprocess.PIPE, env=self._env(),
                              stdin=subprocess.DEVNULL, text=True, bufsize=1) as proc:
            assert proc.stdout is not None
            if stream:
                for line in proc.stdout:
                    tail.append(line)
                    if self.progress:
                        print(line, end="", file=sys.stderr, flush=True)
                out = "".join(tail)
            else:
                out, err = proc.communicate()
                tail.extend(err.splitlines(keepends=True))
        if proc.returncode != 0:
            raise ImageError(_explain("".join(tail), what))
        return out

    def build(self, tag: str, context: Path, dockerfile: Path | None = None,
              build_args: dict[str, str] | None = None, pull: str = "missing") -> str:
        """Build ``context``'s Dockerfile as ``tag``; returns the image id."""
        if not context.is_dir():
            raise ImageError(f"build context {context} is not a directory")
        file = dockerfile or context / "Dockerfile"
        if not file.is_file():
            raise ImageError(f"no Dockerfile at {file} (pass -f FILE)")
        id_file = self.root / "run" / f"build-{os.getpid()}.id"
        id_file.parent.mkdir(parents=True, exist_ok=True)
        args = ["bud", "--isolation", "chroot", "--layers", f"--pull-{pull}"
                if pull in ("always", "never") else "--pull", "-f", str(file),
                "-t", tag, "--iidfile", str(id_file)]
        for key, value in (build_args or {}).items():
            args += ["--build-arg", f"{key}={value}"]
        self._run(self._buildah(*args, str(context)), f"building {tag}")
        image_id = id_file.read_text().strip().removeprefix("sha256:")
        id_file.unlink()
        return image_id

    def images(self) -> list[LocalImage]:
        out = self._run(self._buildah("images", "--json"), "listing images", stream=False)
        docs = json.loads(out or "[]") or []
        return [LocalImage(tuple(d.get("names") or ()), str(d.get("id", "")),
                           str(d.get("size") or ""), str(d.get("createdatraw") or ""))
                for d in docs]

    def exists(self, name: str) -> bool:
        wanted = {name, normalize(name), f"localhost/{name}"}
        return any(wanted & set(image.names) for image in self.images())

    def import_image(self, source: str, name: str) -> str:
        """Put an archive, OCI layout or registry image into the store as ``name`` (the
        name a Dockerfile's FROM line uses); returns the image id."""
        src = transport(source)
        out = self._run(self._buildah("pull", "--quiet", "--tls-verify=false"
                                      if _loopback_ref(src) else "--tls-verify=true", src),
                        f"importing {source}", stream=False)
        image_id = out.strip().splitlines()[-1] if out.strip() else ""
        if not image_id:
            raise ImageError(f"importing {source}: buildah gave no image id")
        self._run(self._buildah("tag", image_id, normalize(name)), f"naming it {name}",
                  stream=False)
        # A layout or archive leaves its path as a name ("localhost/tmp/.../layout"): only
        # the name asked for stays.
        for image in self.images():
            if image.id and image_id.startswith(image.id):
                for extra in set(image.names) - {normalize(name)}:
                    if src.startswith(("oci:", "oci-archive:", "docker-archive:")):
                        self._run(self._buildah("rmi", extra), f"untagging {extra}",
                                  stream=False)
        return image_id

    def destination(self, name: str) -> str:
        """Where an image called ``name`` is pushed: the registry it names, else the dev
        registry under that name."""
        name = name.removeprefix("docker://")
        if has_registry(name) and not name.startswith("localhost/"):
            return name
        if self.dev_registry is None:
            raise ImageError(f"{name} names no registry and no `clrk dev` registry is "
                             "running: start `clrk dev`, or name one (REGISTRY/NAME:TAG)")
        return f"{self.dev_registry}/{name.removeprefix('localhost/')}"

    def push(self, source: str, to: str | None = None, creds: str | None = None,
             authfile: Path | None = None, insecure: bool = False) -> str:
        """Push a local image, an archive or an OCI layout (to ``to``, else where its name
        says); returns the destination."""
        archive = Path(source).exists() or source.startswith(
            ("oci:", "oci-archive:", "docker-archive:"))
        if archive and not to:
            raise ImageError(f"pushing {source}: name the destination, e.g. "
                             f"`clrk image push {source} NAME:TAG` (to the dev registry)")
        if not archive and not self.exists(source):
            raise ImageError(f"no image {source} in clrk's image store (`clrk image ls`); "
                             "build it with `clrk image build -t NAME DIR`, or push an "
                             "archive or OCI layout by its path")
        dest = self.destination(to or source)
        registry = dest.split("/", 1)[0]
        verify = "false" if insecure or is_loopback(registry) else "true"
        what = f"pushing {source} to {dest}"
        if archive:
            auth = ([f"--dest-creds={creds}"] if creds else []) + (
                [f"--dest-authfile={authfile}"] if authfile else [])
            self._run([self._tool("skopeo"), "copy", f"--dest-tls-verify={verify}", *auth,
                       transport(source), f"docker://{dest}"], what)
        else:
            auth = ([f"--creds={creds}"] if creds else []) + (
                [f"--authfile={authfile}"] if authfile else [])
            self._run(self._buildah("push", f"--tls-verify={verify}", *auth, source,
                                    f"docker://{dest}"), what)
        return dest

    def remove(self, name: str) -> None:
        self._run(self._buildah("rmi", "--force", name), f"removing {name}", stream=False)


def _loopback_ref(src: str) -> bool:
    if not src.startswith("docker://"):
        return False
    return is_loopback(src.removeprefix("docker://").split("/", 1)[0])
