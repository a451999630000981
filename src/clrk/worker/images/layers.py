"""Unpacking image layers into a rootfs, safely.

Layers are untrusted input. Every entry must land inside the rootfs: absolute
names, `..`, and paths that would pass through a symlink are refused, as are
hard links to outside and device nodes. OCI whiteouts (`.wh.name`, `.wh..wh..opq`)
delete what lower layers put there. Symlinks themselves may point anywhere: they
are only ever followed inside the sandbox, never here.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tarfile
from pathlib import Path, PurePosixPath
from typing import IO

WHITEOUT = ".wh."
OPAQUE = ".wh..wh..opq"


class LayerError(ValueError):
    """A layer that cannot be unpacked safely; the message names the entry."""


def _clean(name: str) -> PurePosixPath:
    if name.startswith("/"):
        raise LayerError(f"layer entry {name!r} has an absolute path")
    path = PurePosixPath(name)
    parts = [p for p in path.parts if p not in ("", ".")]
    if ".." in parts:
        raise LayerError(f"layer entry {name!r} escapes the root with '..'")
    return PurePosixPath(*parts) if parts else PurePosixPath(".")


def _parent_inside(root: Path, rel: PurePosixPath) -> Path:
    """The real directory for ``rel``'s parent; refuses any symlink on the way."""
    cur = root
    for part in rel.parts[:-1]:
        cur = cur / part
        if cur.is_symlink():
            raise LayerError(f"layer entry {str(rel)!r} passes through the symlink "
                             f"{str(cur.relative_to(root))!r}")
        if not cur.exists():
            cur.mkdir(mode=0o755)
        elif not cur.is_dir():
            raise LayerError(f"layer entry {str(rel)!r} needs {str(cur.relative_to(root))!r} "
                             "to be a directory")
    return cur


def _remove(path: Path) -> None:
    if path.is_symlink() or not path.is_dir():
        path.unlink(missing_ok=True)
    else:
        shutil.rmtree(path)


def _apply_meta(path: Path, member: tarfile.TarInfo) -> None:
    with contextlib.suppress(OSError):
        os.lchown(path, member.uid, member.gid)
    if not member.issym():
        os.chmod(path, member.mode & 0o7777)
        os.utime(path, (member.mtime, member.mtime))


def extract(fileobj: IO[bytes], root: Path) -> None:
    """Apply one layer (tar, optionally gzip-compressed) on top of ``root``."""
    try:
        tar = tarfile.open(fileobj=fileobj, mode="r:*")  # noqa: SIM115 (closed below)
    except tarfile.TarError as err:
        raise LayerError(f"layer is not a tar archive: {err}") from None
    dirs: list[tuple[Path, tarfile.TarInfo]] = []
    with tar:
        for member in tar:
            rel = _clean(member.name)
            if rel == PurePosixPath("."):
                continue
            parent = _parent_inside(root, rel)
            base = rel.name
            if base == OPAQUE:
                for child in parent.iterdir():
                    _remove(child)
                continue
            if base.startswith(WHITEOUT):
                victim = parent / base[len(WHITEOUT):]
                if victim.exists() or victim.is_symlink():
                    _remove(victim)
                continue
            target = parent / base
            if member.ischr() or member.isblk():
                raise LayerError(f"layer entry {member.name!r} is a device node")
            if member.isdir():
                if target.is_symlink() or (target.exists() and not target.is_dir()):
                    _remove(target)
                target.mkdir(mode=0o755, exist_ok=True)
                dirs.append((target, member))
                continue
            if target.exists() or target.is_symlink():
                _remove(target)
            if member.issym():
                os.symlink(member.linkname, target)
                _apply_meta(target, member)
            elif member.islnk():
                src_rel = _clean(member.linkname)
                src = _parent_inside(root, src_rel) / src_rel.name
                if src.is_symlink() or not src.exists():
                    raise LayerError(f"layer entry {member.name!r} hard-links to "
                                     f"{member.linkname!r}, which is not a file in the image")
                os.link(src, target)
            elif member.isfifo():
                os.mkfifo(target, member.mode & 0o777)
            elif member.isreg():
                data = tar.extractfile(member)
                assert data is not None
                fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW,
                             0o600)
                with os.fdopen(fd, "wb") as out:
                    shutil.copyfileobj(data, out, 1 << 20)
                _apply_meta(target, member)
            else:
                raise LayerError(f"layer entry {member.name!r} has an unsupported type")
    # Directory modes last, so a read-only directory does not block its own contents.
    for path, member in reversed(dirs):
        _apply_meta(path, member)


def is_inside(root: Path, path: Path) -> bool:
    try:
        path.resolve().relative_to(root.resolve())
        return True
    except ValueError:
        return False


__all__ = ["LayerError", "extract", "is_inside"]
