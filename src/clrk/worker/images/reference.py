"""Image references as Docker and OCI tools read them."""

from __future__ import annotations

import re
from dataclasses import dataclass

DOCKER_HUB = "docker.io"
DOCKER_HUB_API = "registry-1.docker.io"
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_REPO = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})*$")
_REF = re.compile(
    r"^(?:(?P<registry>(?:[a-zA-Z0-9-]+\.)*[a-zA-Z0-9-]+(?::[0-9]+)?|\[[0-9a-fA-F:]+\](?::[0-9]+)?)/)?"
    r"(?P<repo>[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*)"
    r"(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}))?"
    r"(?:@(?P<digest>sha256:[a-f0-9]{64}))?$"
)


class ReferenceError(ValueError):
    pass


@dataclass(frozen=True)
class Reference:
    registry: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    @property
    def api_host(self) -> str:
        return DOCKER_HUB_API if self.registry == DOCKER_HUB else self.registry

    @property
    def reference(self) -> str:
        """What to ask the manifests endpoint for: the digest when pinned, else the tag."""
        return self.digest or self.tag or "latest"

    def __str__(self) -> str:
        out = f"{self.registry}/{self.repository}"
        if self.tag:
            out += f":{self.tag}"
        if self.digest:
            out += f"@{self.digest}"
        return out


def parse(text: str) -> Reference:
    m = _REF.match(text)
    if not m:
        raise ReferenceError(f"invalid image reference {text!r}: expected "
                             "[registry[:port]/]repository[:tag][@sha256:digest]")
    registry = m.group("registry")
    repo = m.group("repo")
    # "busybox" and "library/busybox" live on Docker Hub; the first path part is a registry
    # only if it looks like a host (a dot, a port, or localhost).
    if registry and not ("." in registry or ":" in registry or registry == "localhost"
                         or registry.startswith("[")):
        repo = f"{registry}/{repo}"
        registry = None
        if not _REPO.match(repo):
            raise ReferenceError(f"invalid image reference {text!r}: repository names are "
                                 "lowercase")
    registry = registry or DOCKER_HUB
    if registry == DOCKER_HUB and "/" not in repo:
        repo = f"library/{repo}"
    tag = m.group("tag")
    digest = m.group("digest")
    if not tag and not digest:
        tag = "latest"
    return Reference(registry, repo, tag, digest)
