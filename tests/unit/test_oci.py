"""The image tooling's pure parts: how names, sources and destinations are read, and
what a builder's failure becomes for the user."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from clrk.oci import dev_registry
from clrk.oci.store import ImageError, ImageStore, _explain, normalize, transport


def test_names_read_as_docker_reads_them() -> None:
    assert normalize("python:3.12-slim") == "docker.io/library/python:3.12-slim"
    assert normalize("team/agent:1") == "docker.io/team/agent:1"
    assert normalize("127.0.0.1:5001/word-count:0.1") == "127.0.0.1:5001/word-count:0.1"
    assert normalize("ghcr.io/o/a:1") == "ghcr.io/o/a:1"
    assert normalize("localhost/a:1") == "localhost/a:1"


def _tar(path: Path, *names: str) -> Path:
    with tarfile.open(path, "w") as tar:
        for name in names:
            info = tarfile.TarInfo(name)
            info.size = 2
            tar.addfile(info, io.BytesIO(b"{}"))
    return path


def test_sources_are_recognised(tmp_path: Path) -> None:
    assert transport(str(_tar(tmp_path / "d.tar", "manifest.json"))) == \
        f"docker-archive:{tmp_path / 'd.tar'}"
    assert transport(str(_tar(tmp_path / "o.tar", "oci-layout", "index.json"))) == \
        f"oci-archive:{tmp_path / 'o.tar'}"
    layout = tmp_path / "layout"
    layout.mkdir()
    with pytest.raises(ImageError, match="not an OCI image layout"):
        transport(str(layout))
    (layout / "oci-layout").write_text("{}")
    assert transport(str(layout)) == f"oci:{layout}"
    with pytest.raises(ImageError, match="neither an OCI archive nor"):
        transport(str(_tar(tmp_path / "x.tar", "etc/passwd")))
    (tmp_path / "junk").write_text("no tar")
    with pytest.raises(ImageError, match="not an image archive"):
        transport(str(tmp_path / "junk"))
    assert transport("ghcr.io/o/a:1") == "docker://ghcr.io/o/a:1"


def test_destinations(tmp_path: Path) -> None:
    store = ImageStore(tmp_path, "127.0.0.1:5001")
    assert store.destination("word-count:0.1") == "127.0.0.1:5001/word-count:0.1"
    assert store.destination("localhost/word-count:0.1") == "127.0.0.1:5001/word-count:0.1"
    assert store.destination("ghcr.io/o/a:1") == "ghcr.io/o/a:1"
    with pytest.raises(ImageError, match="no `clrk dev` registry is running"):
        ImageStore(tmp_path).destination("word-count:0.1")


def test_failures_say_what_to_do() -> None:
    missing = ('STEP 1/3: FROM python:3.12-slim\nError: creating build container: pull '
               'policy is "never" but "python:3.12-slim" could not be found locally\n')
    assert "clrk image import ARCHIVE --name NAME" in _explain(missing, "building x")
    offline = ("Error: creating build container: initializing source docker://python:3.12:"
               " pinging container registry registry-1.docker.io: Get "
               '"https://registry-1.docker.io/v2/": dial tcp: lookup registry-1.docker.io: '
               "no such host\n")
    assert "clrk image import" in _explain(offline, "building x")
    refused = ('Error: pushing image "a" to "docker://127.0.0.1:1/a": pinging container '
               'registry 127.0.0.1:1: Get "http://127.0.0.1:1/v2/": dial tcp 127.0.0.1:1: '
               "connect: connection refused\n")
    assert _explain(refused, "pushing a").startswith("pushing a: the registry is unreachable")
    assert "--creds" in _explain("Error: unauthorized: authentication required\n", "pushing a")


def test_the_registry_port_is_remembered(tmp_path: Path) -> None:
    registry = dev_registry.DevRegistry(tmp_path, 0)
    port = registry._choose_port()
    (tmp_path / "registry").mkdir()
    (tmp_path / "registry" / "port").write_text(str(port))
    assert dev_registry.DevRegistry(tmp_path, None)._choose_port() == port
    assert dev_registry.DevRegistry(tmp_path, 0)._choose_port() == port
