"""The image store: blobs and unpacked root filesystems, keyed by digest.

A tag is resolved anew on each pull; what it resolves to is cached by manifest
digest, so two tags of one image share one rootfs and a moved tag is noticed.
Concurrent pulls of the same image share one download.

The store is bounded the way kubelet bounds its images: past a high mark of the
disk's use, the images unused longest go (never one a sandbox runs from or one
used in the last minutes), down to a low mark, with the blobs and trees no image
left needs.

Images built on one base share its unpacked files. The tree each prefix of an
image's layers makes is kept under its chain id (the layers' digests hashed in
order), and the next layer is unpacked over a hard-linked copy of it: ten agents
on one Python base cost one Python tree and ten top layers, not ten trees. The
sharing is safe because a sandbox's root is read-only and unpacking never writes
into a file it did not create (a replaced file is unlinked first).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import re
import shutil
import subprocess
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clrk.worker.images.layers import LayerError, extract
from clrk.worker.images.reference import Reference, parse
from clrk.worker.images.registry import RegistryClient, RegistryError


@dataclass(frozen=True)
class Image:
    reference: str
    digest: str
    config: dict[str, Any]  # the OCI image config (its "config" holds Env, Entrypoint, ...)
    rootfs: Path

    @property
    def entrypoint(self) -> list[str]:
        return list((self.config.get("config") or {}).get("Entrypoint") or [])

    @property
    def working_dir(self) -> str:
        return str((self.config.get("config") or {}).get("WorkingDir") or "/")


DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
EMPTY = "empty"  # the chain of an image without layers


def chain_ids(layers: list[str]) -> list[str]:
    """The id of each prefix of ``layers`` (digests, bottom first), as a directory name:
    the first layer's digest, then each next one hashed onto the id below it."""
    ids: list[str] = []
    for digest in layers:
        below = ids[-1] if ids else ""
        ids.append(digest.split(":", 1)[1] if not below
                   else hashlib.sha256(f"{below} {digest}".encode()).hexdigest())
    return ids


@dataclass
class PullProgress:
    total: int  # bytes, from the manifest's layer sizes
    layers: int
    completed: int = 0
    done: bool = False


class ImageStore:
    def __init__(self, root: Path, registry: RegistryClient | None = None) -> None:
        self.root = root
        self.registry = registry or RegistryClient()
        self.progress: dict[str, PullProgress] = {}  # pulls under way, by reference
        self.blobs = root / "blobs" / "sha256"
        self.images = root / "images"
        self.chains = root / "chains"  # the tree of each prefix of layers, by chain id
        for directory in (self.blobs, self.images, self.chains):
            directory.mkdir(parents=True, exist_ok=True)
        self._pulls: dict[str, asyncio.Task[Image]] = {}
        # Unpacking and collecting exclude each other: the trees an unpack builds on are
        # not named by any image until it ends.
        self._lock = threading.Lock()
        # Held only for a moment, also on the event loop: a load's mark of use, and the
        # blobs a pull wants, against their removal.
        self._meta_lock = threading.Lock()
        self._wanted: Counter[str] = Counter()  # layer digests of pulls under way

    def cached(self) -> list[str]:
        """Digests of every unpacked image."""
        return sorted(p.name.replace("-", ":", 1) for p in self.images.iterdir()
                      if (p / "image.json").exists())

    def _image_dir(self, digest: str) -> Path:
        return self.images / digest.replace(":", "-", 1)

    def load(self, digest: str) -> Image | None:
        if not DIGEST.fullmatch(digest):  # it names a directory: nothing else may pass
            return None
        meta = self._image_dir(digest) / "image.json"
        with self._meta_lock:
            try:
                os.utime(meta)  # its last use, which collection goes by
            except FileNotFoundError:
                return None
        return self._read(meta)

    async def pull(self, text: str) -> Image:
        """Resolve and fetch ``text`` (shared with any pull of it already under way)."""
        task = self._pulls.get(text)
        if task is None:
            task = asyncio.ensure_future(self._pull(text))
            self._pulls[text] = task
            task.add_done_callback(lambda _t: self._pulls.pop(text, None))
        return await asyncio.shield(task)

    async def _pull(self, text: str) -> Image:
        ref = parse(text)
        resolved = await self.registry.resolve(ref)
        cached = self.load(resolved.digest)
        if cached is not None:
            return cached
        layers = resolved.manifest.get("layers") or []
        for layer in layers:  # each names a file here: nothing but a digest may pass
            if not DIGEST.fullmatch(str(layer.get("digest"))):
                raise RegistryError(f"unsupported layer digest {layer.get('digest')!r} in {ref}")
        progress = PullProgress(sum(int(la.get("size") or 0) for la in layers), len(layers))
        self.progress[text] = progress
        digests = [str(layer["digest"]) for layer in layers]
        with self._meta_lock:  # before it looks for them, so collection keeps them
            self._wanted.update(digests)
        try:
            for layer in layers:
                await self._blob(ref, layer["digest"], progress)
            # Unpacking takes seconds for a large image: not on the worker's event loop.
            return await asyncio.to_thread(self._unpack, str(ref), resolved.digest,
                                           resolved.config, layers)
        finally:
            progress.done = True
            self.progress.pop(text, None)
            with self._meta_lock:
                self._wanted.subtract(digests)
                self._wanted = +self._wanted  # without the digests no pull wants now

    async def _blob(self, ref: Reference, digest: str, progress: PullProgress) -> Path:
        path = self.blobs / digest.split(":", 1)[1]
        if path.exists():
            progress.completed += path.stat().st_size
        else:
            def count(n: int) -> None:
                progress.completed += n

            await self.registry.fetch_blob(ref, digest, path, count)
        return path

    def _unpack(self, reference: str, digest: str, config: dict[str, Any],
                layers: list[dict[str, Any]]) -> Image:
        with self._lock:
            return self._unpack_locked(reference, digest, config, layers)

    def _unpack_locked(self, reference: str, digest: str, config: dict[str, Any],
                       layers: list[dict[str, Any]]) -> Image:
        chains = chain_ids([layer["digest"] for layer in layers])
        # Start from the longest prefix of these layers already unpacked.
        done = next((n for n in range(len(chains), 0, -1)
                     if (self.chains / chains[n - 1]).is_dir()), 0)
        base = self.chains / chains[done - 1] if done else None
        for layer, chain in zip(layers[done:], chains[done:], strict=True):
            base = self._apply(reference, base, layer["digest"], chain)
        if not layers:
            base = self.chains / EMPTY
            base.mkdir(exist_ok=True)
        assert base is not None
        final = self._image_dir(digest)
        final.mkdir(exist_ok=True)
        meta = final / f".image-{uuid.uuid4().hex}.json"
        meta.write_text(json.dumps(
            {"reference": reference, "digest": digest, "config": config, "chain": base.name,
             "chains": chains, "layers": [layer["digest"] for layer in layers]}))
        meta.replace(final / "image.json")
        return Image(reference, digest, config, base)

    def _apply(self, reference: str, base: Path | None, layer: str, chain: str) -> Path:
        """The tree of ``base`` with ``layer`` unpacked over it, kept as ``chain``."""
        final = self.chains / chain
        work = self.chains / f".unpack-{uuid.uuid4().hex}"
        try:
            if base is None:
                work.mkdir()
            else:  # new directories, the files hard links to base's (their owners kept)
                subprocess.run(["cp", "--archive", "--link", "--no-target-directory",
                                str(base), str(work)], check=True, capture_output=True)
            with (self.blobs / layer.split(":", 1)[1]).open("rb") as f:
                extract(f, work)
            if final.exists():  # another pull made it meanwhile
                shutil.rmtree(work)
            else:
                work.rename(final)
        except LayerError as err:
            shutil.rmtree(work, ignore_errors=True)
            raise RegistryError(f"image {reference}: {err}") from None
        except subprocess.CalledProcessError as err:
            shutil.rmtree(work, ignore_errors=True)
            raise RegistryError(f"image {reference}: could not link the unpacked layers "
                                f"under {base}: {err.stderr.decode(errors='replace').strip()}"
                                ) from None
        except BaseException:
            shutil.rmtree(work, ignore_errors=True)
            raise
        return final

    def collect(self, in_use: set[Path], too_full: Callable[[], bool],
                min_age: float = 120.0) -> list[str]:
        """While ``too_full()``, remove the image unused longest, and the trees and blobs
        no image left needs; never an image whose tree is in ``in_use`` (a sandbox's
        root) or used in the last ``min_age`` seconds (one about to be). Returns the
        digests removed."""
        removed: list[str] = []
        with self._lock:
            candidates = []
            for meta in self.images.glob("*/image.json"):
                image = self._read(meta)
                with contextlib.suppress(OSError):
                    if image is not None and image.rootfs not in in_use:
                        candidates.append((meta.stat().st_mtime, image.digest, meta))
            for _, digest, meta in sorted(candidates):
                if not too_full():
                    break
                with self._meta_lock:  # a load now marks it used, or finds it gone
                    try:
                        if meta.stat().st_mtime >= time.time() - min_age:
                            continue
                        meta.unlink()
                    except FileNotFoundError:
                        continue
                shutil.rmtree(meta.parent, ignore_errors=True)
                removed.append(digest)
                self._remove_unneeded(in_use)
        return removed

    @staticmethod
    def _doc(meta: Path) -> dict[str, Any] | None:
        """An image.json's content (None if it is gone or torn)."""
        try:
            return dict(json.loads(meta.read_text()))
        except (OSError, ValueError):
            return None

    def _read(self, meta: Path) -> Image | None:
        """The image ``meta`` describes (None if it is gone or torn)."""
        doc = self._doc(meta)
        if doc is None:
            return None
        # A store written before layers were shared keeps each rootfs beside its image.json.
        rootfs = self.chains / doc["chain"] if "chain" in doc else meta.parent / "rootfs"
        return Image(doc.get("reference", ""), doc.get("digest", ""), doc.get("config") or {},
                     rootfs)

    def _remove_unneeded(self, in_use: set[Path]) -> None:
        chains: set[str] = {EMPTY}
        blobs: set[str] = set()
        for meta in self.images.glob("*/image.json"):
            doc = self._doc(meta) or {}
            chains.update(doc.get("chains") or [doc.get("chain", "")])
            blobs.update(doc.get("layers") or [])
        # A pull under way has not unpacked yet (unpacking holds the lock): it finds
        # whatever prefix is left. Its blobs, though, must stay.
        for tree in self.chains.iterdir():
            if not (tree.name.startswith(".") or tree.name in chains or tree in in_use):
                shutil.rmtree(tree)
        with self._meta_lock:
            for blob in self.blobs.iterdir():
                name = f"sha256:{blob.name}"
                if not (blob.name.endswith(".partial") or name in blobs
                        or name in self._wanted):
                    blob.unlink(missing_ok=True)

    def clean_partial(self) -> None:
        """Remove unpack directories a crashed worker left behind."""
        for p in self.chains.glob(".unpack-*"):
            shutil.rmtree(p, ignore_errors=True)
        for p in self.images.glob("*/.image-*.json"):
            p.unlink(missing_ok=True)
        for p in self.images.iterdir():  # an unpack or a removal cut short
            if not (p / "image.json").exists():
                shutil.rmtree(p, ignore_errors=True)
        for p in self.blobs.glob("*.partial"):
            p.unlink(missing_ok=True)
