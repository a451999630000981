"""Pulling images from a real registry, and unpacking hostile layers safely."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import os
import random
import tarfile
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from clrk.worker.images import pull_secrets
from clrk.worker.images.collection import DiskMarks, collect_once
from clrk.worker.images.layers import LayerError, extract
from clrk.worker.images.reference import ReferenceError, parse
from clrk.worker.images.registry import RegistryClient, RegistryError
from clrk.worker.images.store import ImageStore
from tests.auth_registry import AuthRegistry
from tests.images import BuiltImage, Layer, Recipe, Registry, build, busybox_recipe


def store(tmp_path: Path, registry: Registry) -> ImageStore:
    return ImageStore(tmp_path / "images", RegistryClient(insecure={registry.host}))


def test_references() -> None:
    r = parse("busybox")
    assert (r.registry, r.repository, r.tag, r.api_host) == (
        "docker.io", "library/busybox", "latest", "registry-1.docker.io")
    r = parse("registry.example.com:5000/team/word-count:0.1")
    assert (r.registry, r.repository, r.tag) == ("registry.example.com:5000", "team/word-count",
                                                 "0.1")
    r = parse("curlimages/curl:8.10.1")
    assert (r.registry, r.repository) == ("docker.io", "curlimages/curl")
    digest = "sha256:" + "a" * 64
    assert parse(f"localhost/x@{digest}").reference == digest
    for bad in ("UPPER/case", "a//b", "x:tag:more", "", "x@sha256:short"):
        with pytest.raises(ReferenceError):
            parse(bad)


async def test_pull_unpack_and_cache_by_digest(tmp_path: Path, registry: Registry) -> None:
    image = build(busybox_recipe(Entrypoint=["/bin/sh", "-c"]))
    digest = registry.push("test/busybox", "1", image)
    s = store(tmp_path, registry)
    pulled = await s.pull(f"{registry.host}/test/busybox:1")
    assert pulled.digest == digest
    assert (pulled.rootfs / "bin" / "busybox").stat().st_size > 100_000
    assert (pulled.rootfs / "bin" / "sh").is_symlink()
    assert pulled.entrypoint == ["/bin/sh", "-c"]
    assert s.cached() == [digest]
    # A second tag of the same image shares the unpacked rootfs.
    registry.push("test/busybox", "2", image)
    again = await s.pull(f"{registry.host}/test/busybox:2")
    assert again.rootfs == pulled.rootfs
    # A moved tag is noticed on the next pull.
    moved = build(busybox_recipe(Entrypoint=["/bin/echo"]))
    new_digest = registry.push("test/busybox", "1", moved)
    assert (await s.pull(f"{registry.host}/test/busybox:1")).digest == new_digest
    assert sorted(s.cached()) == sorted([digest, new_digest])


async def test_images_on_one_base_share_its_files(tmp_path: Path, registry: Registry) -> None:
    base = Layer({"lib/shared": b"base " * 2000, "etc/conf": b"base conf", "etc/gone": b"x"})
    one = build(Recipe("share-one", [base, Layer({"app/one": b"1"})], {"Env": []}))
    two = build(Recipe("share-two", [base, Layer({"etc/conf": b"two's conf",
                                                  "etc/.wh.gone": b""})], {"Env": []}))
    registry.push("test/share", "one", one)
    registry.push("test/share", "two", two)
    s = store(tmp_path, registry)
    a = (await s.pull(f"{registry.host}/test/share:one")).rootfs
    b = (await s.pull(f"{registry.host}/test/share:two")).rootfs
    assert a != b
    # The base's file is one file on disk, in both trees.
    assert (a / "lib" / "shared").stat().st_ino == (b / "lib" / "shared").stat().st_ino
    # What the second image's top layer replaced or deleted, the first still has.
    assert (a / "etc" / "conf").read_bytes() == b"base conf"
    assert (b / "etc" / "conf").read_bytes() == b"two's conf"
    assert (a / "etc" / "gone").exists() and not (b / "etc" / "gone").exists()
    assert (a / "app" / "one").exists() and not (b / "app").exists()
    # A pull interrupted mid-unpack leaves a directory the next start removes.
    (s.chains / ".unpack-interrupted").mkdir()
    s.clean_partial()
    assert not list(s.chains.glob(".unpack-*"))
    # A store written before layers were shared (the rootfs beside image.json) still loads.
    old_dir = s.images / ("sha256-" + "c" * 64)
    (old_dir / "rootfs" / "bin").mkdir(parents=True)
    (old_dir / "image.json").write_text(json.dumps(
        {"reference": "old", "digest": "sha256:" + "c" * 64, "config": {}}))
    loaded = s.load("sha256:" + "c" * 64)
    assert loaded is not None and (loaded.rootfs / "bin").is_dir()


def _top(name: str) -> Layer:
    """A layer of 256 KiB that does not compress: its removal shows on the disk."""
    return Layer({f"app/{name}": random.Random(name).randbytes(256 << 10)})


def _disk_bytes(root: Path) -> int:
    """Bytes the store takes on disk, each hard-linked file once."""
    seen: set[int] = set()
    total = 0
    for path in [root, *root.rglob("*")]:
        st = path.lstat()
        if st.st_ino not in seen:
            seen.add(st.st_ino)
            total += st.st_blocks * 512
    return total


async def test_a_full_disk_removes_the_images_unused_longest(tmp_path: Path,
                                                             registry: Registry) -> None:
    base = Layer({"lib/base": random.Random("base").randbytes(256 << 10)})
    built = {n: build(Recipe(f"gc-{n}", [base, _top(n)], {"Env": []})) for n in "abc"}
    s = store(tmp_path, registry)
    pulled = {}
    for age, n in ((3000, "a"), (2000, "b"), (1000, "c")):
        registry.push("test/gc", n, built[n])
        pulled[n] = await s.pull(f"{registry.host}/test/gc:{n}")
        os.utime(s.images / pulled[n].digest.replace(":", "-", 1) / "image.json",
                 (time.time() - age, time.time() - age))
    blob = {n: s.blobs / BuiltImage.digest(built[n].layers[1]).split(":")[1] for n in "abc"}
    base_blob = s.blobs / BuiltImage.digest(built["a"].layers[0]).split(":")[1]
    # "a", the oldest, is a sandbox's root: "b" goes first, with its own blob and tree.
    removed = s.collect({pulled["a"].rootfs}, lambda: len(s.cached()) > 2)
    assert removed == [pulled["b"].digest]
    assert not pulled["b"].rootfs.exists() and not blob["b"].exists()
    assert pulled["a"].rootfs.exists() and blob["a"].exists() and base_blob.exists()
    # "c" was just used (an invocation is about to start from it): it stays, "a" goes.
    s.load(pulled["c"].digest)
    assert s.collect(set(), lambda: True) == [pulled["a"].digest]
    assert s.cached() == [pulled["c"].digest]
    assert (pulled["c"].rootfs / "lib" / "base").exists() and base_blob.exists()
    assert sorted(p.name for p in s.blobs.iterdir()) == sorted(
        [base_blob.name, blob["c"].name])
    # A removed image is pulled again when an agent needs it.
    again = await s.pull(f"{registry.host}/test/gc:b")
    assert (again.rootfs / "app" / "b").read_bytes() == \
        random.Random("b").randbytes(256 << 10)

    # The worker's check: past the high mark of the disk, down to the low one.
    await s.pull(f"{registry.host}/test/gc:a")
    for meta in s.images.glob("*/image.json"):
        os.utime(meta, (time.time() - 600, time.time() - 600))
    used = _disk_bytes(s.root)
    disk = SimpleNamespace(total=int(used / 0.9), used=used)  # 90 % used

    def usage(path: Path) -> SimpleNamespace:
        assert path == s.root
        disk.used = _disk_bytes(s.root)
        return disk

    marks = DiskMarks(high=85, low=80)
    removed = collect_once(s, {again.rootfs}, marks, usage)
    assert removed and again.digest not in removed
    assert 100 * disk.used / disk.total <= 80
    assert collect_once(s, set(), marks, usage) == []  # under the high mark: nothing
    with pytest.raises(ValueError, match="low 85 and high 80"):
        DiskMarks(high=80, low=85)


async def test_concurrent_pulls_share_one_download(tmp_path: Path, registry: Registry) -> None:
    registry.push("test/shared", "1", build(busybox_recipe()))
    client = RegistryClient(insecure={registry.host})
    fetched: list[str] = []
    original = client.fetch_blob

    async def counting(ref, digest, dest, on_bytes):  # type: ignore[no-untyped-def]
        fetched.append(digest)
        await original(ref, digest, dest, on_bytes)

    client.fetch_blob = counting  # type: ignore[method-assign, assignment]
    s = ImageStore(tmp_path / "images", client)
    ref = f"{registry.host}/test/shared:1"
    results = await asyncio.gather(*(s.pull(ref) for _ in range(5)))
    assert len({r.digest for r in results}) == 1
    assert len(fetched) == 1


async def test_platform_is_chosen_from_the_index(tmp_path: Path, registry: Registry) -> None:
    def arch_image(arch: str) -> BuiltImage:
        layer = Layer({"arch": arch.encode()})
        return build(Recipe(f"arch-{arch}", [layer], {"Env": []}, architecture=arch))

    registry.push_index("test/multi", "1", {"arm64": arch_image("arm64"),
                                            "amd64": arch_image("amd64")})
    pulled = await store(tmp_path, registry).pull(f"{registry.host}/test/multi:1")
    assert (pulled.rootfs / "arch").read_bytes() == b"amd64"


async def test_pull_errors_are_clear(tmp_path: Path, registry: Registry) -> None:
    s = store(tmp_path, registry)
    with pytest.raises(RegistryError, match="not found"):
        await s.pull(f"{registry.host}/test/missing:1")
    with pytest.raises(RegistryError, match="unreachable"):
        await s.pull("127.0.0.1:1/test/down:1")
    with pytest.raises(ReferenceError, match="invalid image reference"):
        await s.pull("Not A Ref")
    # Without being told the registry is insecure, plain HTTP is never used.
    strict = ImageStore(tmp_path / "strict", RegistryClient())
    with pytest.raises(RegistryError, match="unreachable"):
        await strict.pull(f"{registry.host}/test/missing:1")


async def test_hostile_layer_fails_and_writes_nothing_outside(tmp_path: Path,
                                                             registry: Registry) -> None:
    outside = tmp_path / "escaped"
    for i, files in enumerate([
        {"../escaped": b"x"},
        {"a/../../escaped": b"x"},
    ]):
        evil = build(Recipe(f"evil-{i}", [Layer(files)], {"Env": []}))  # type: ignore[arg-type]
        registry.push("test/evil", str(i), evil)
        with pytest.raises(RegistryError, match="escapes the root"):
            await store(tmp_path, registry).pull(f"{registry.host}/test/evil:{i}")
    assert not outside.exists()
    assert not list((tmp_path / "images" / "chains").glob(".unpack-*"))


def _tar(entries: list[tarfile.TarInfo], data: dict[str, bytes] | None = None) -> io.BytesIO:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for e in entries:
            payload = (data or {}).get(e.name)
            if payload is not None:
                e.size = len(payload)
            tar.addfile(e, io.BytesIO(payload) if payload is not None else None)
    buf.seek(0)
    return buf


def _entry(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    e = tarfile.TarInfo(name)
    e.type = kind
    e.linkname = link
    e.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
    return e


def test_unpack_rules(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    extract(_tar([_entry("etc", tarfile.DIRTYPE), _entry("etc/a"), _entry("etc/b"),
                  _entry("opaque", tarfile.DIRTYPE), _entry("opaque/old"),
                  _entry("link", tarfile.SYMTYPE, "/etc/a"), _entry("hard", tarfile.LNKTYPE,
                                                                    "etc/a")],
                 {"etc/a": b"A", "etc/b": b"B", "opaque/old": b"O"}), root)
    assert (root / "hard").read_bytes() == b"A"
    assert str((root / "link").readlink()) == "/etc/a"  # kept, never followed here
    extract(_tar([_entry("etc/.wh.b"), _entry("opaque/.wh..wh..opq"), _entry("opaque/new")],
                 {"opaque/new": b"N"}), root)
    assert not (root / "etc" / "b").exists() and (root / "etc" / "a").exists()
    assert [p.name for p in (root / "opaque").iterdir()] == ["new"]
    # Writing through a symlink (even one pointing inside) is refused.
    outside = tmp_path / "outside"
    outside.mkdir()
    extract(_tar([_entry("esc", tarfile.SYMTYPE, str(outside))]), root)
    with pytest.raises(LayerError, match="symlink"):
        extract(_tar([_entry("esc/pwned")], {"esc/pwned": b"x"}), root)
    assert not list(outside.iterdir())
    with pytest.raises(LayerError, match="absolute"):
        extract(_tar([_entry("/abs")], {"/abs": b"x"}), root)
    with pytest.raises(LayerError, match="device"):
        extract(_tar([_entry("dev/null", tarfile.CHRTYPE)]), root)
    with pytest.raises(LayerError, match="escapes the root"):
        extract(_tar([_entry("h2", tarfile.LNKTYPE, "../../etc/passwd")]), root)
    with pytest.raises(LayerError, match="hard-links"):
        extract(_tar([_entry("h3", tarfile.LNKTYPE, "no/such/file")]), root)
    with pytest.raises(LayerError, match="not a tar"):
        extract(io.BytesIO(b"garbage" * 100), root)


async def test_bearer_token_auth(tmp_path: Path, registry: Registry) -> None:
    registry.push("test/private", "1", build(busybox_recipe()))
    front = AuthRegistry(registry.host)
    try:
        ref = f"{front.host}/test/private:1"
        anonymous = ImageStore(tmp_path / "a", RegistryClient(insecure={front.host}))
        with pytest.raises(RegistryError, match="refused a pull token"):
            await anonymous.pull(ref)
        wrong = ImageStore(tmp_path / "w", RegistryClient(
            insecure={front.host}, credentials={front.host: ("puller", "nope")}))
        with pytest.raises(RegistryError, match="refused a pull token"):
            await wrong.pull(ref)
        good = ImageStore(tmp_path / "g", RegistryClient(
            insecure={front.host}, credentials={front.host: ("puller", "s3cret")}))
        pulled = await good.pull(ref)
        assert (pulled.rootfs / "bin" / "busybox").exists()
        # The token is reused for the rest of the pull (one token request, not one per blob).
        assert front.token_requests == 3
    finally:
        front.stop()
    public = AuthRegistry(registry.host, anonymous=True)
    try:
        s = ImageStore(tmp_path / "p", RegistryClient(insecure={public.host}))
        assert (await s.pull(f"{public.host}/test/private:1")).rootfs.exists()
    finally:
        public.stop()


def _dockerconfig(auths: object) -> dict[str, object]:
    raw = base64.b64encode(json.dumps({"auths": auths}).encode()).decode()
    return {"metadata": {"name": "regcred"}, "type": "kubernetes.io/dockerconfigjson",
            "data": {".dockerconfigjson": raw}}


def test_pull_secret_formats() -> None:
    auth = base64.b64encode(b"u2:p:w").decode()
    creds = pull_secrets.credentials(_dockerconfig({
        "registry.example.com:5000": {"username": "u1", "password": "p1"},
        "https://index.docker.io/v1/": {"auth": auth},
        "https://ghcr.io/": {"auth": auth}}))
    assert creds == {"registry.example.com:5000": ("u1", "p1"), "docker.io": ("u2", "p:w"),
                     "ghcr.io": ("u2", "p:w")}
    legacy = {"metadata": {"name": "old"}, "data": {".dockercfg": base64.b64encode(
        json.dumps({"quay.io": {"auth": auth}}).encode()).decode()}}
    assert pull_secrets.credentials(legacy) == {"quay.io": ("u2", "p:w")}
    for bad, words in (({"metadata": {"name": "x"}, "data": {}}, "neither"),
                       ({"metadata": {"name": "x"}, "data": {".dockerconfigjson": "!!"}},
                        "not base64 JSON"),
                       (_dockerconfig({"h": {"username": "only"}}), "no username")):
        with pytest.raises(pull_secrets.PullSecretError, match=words):
            pull_secrets.credentials(bad)
