"""The image store: blobs and unpacked root filesystems, keyed by digest.

A tag is resolved anew on each pull; what it resolves to is cached by manifest
digest, so two tags of one image share one rootfs and a moved tag is noticed.
Concurrent pulls of the same image share one download.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import uuid
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
        self.blobs.mkdir(parents=True, exist_ok=True)
        self.images.mkdir(parents=True, exist_ok=True)
        self._pulls: dict[str, asyncio.Task[Image]] = {}

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
        if not meta.exists():
            return None
        doc = json.loads(meta.read_text())
        return Image(doc["reference"], digest, doc["config"], self._image_dir(digest) / "rootfs")

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
        progress = PullProgress(sum(int(la.get("size") or 0) for la in layers), len(layers))
        self.progress[text] = progress
        try:
            for layer in layers:
                await self._blob(ref, layer["digest"], progress)
            return self._unpack(str(ref), resolved.digest, resolved.config, layers)
        finally:
            progress.done = True
            self.progress.pop(text, None)

    async def _blob(self, ref: Reference, digest: str, progress: PullProgress) -> Path:
        if not digest.startswith("sha256:"):
            raise RegistryError(f"unsupported digest {digest!r} in {ref}")
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
        final = self._image_dir(digest)
        work = self.images / f".unpack-{uuid.uuid4().hex}"
        rootfs = work / "rootfs"
        rootfs.mkdir(parents=True)
        try:
            for layer in layers:
                with (self.blobs / layer["digest"].split(":", 1)[1]).open("rb") as f:
                    extract(f, rootfs)
            (work / "image.json").write_text(json.dumps(
                {"reference": reference, "digest": digest, "config": config}))
            if final.exists():
                shutil.rmtree(work)
            else:
                work.rename(final)
        except LayerError as err:
            shutil.rmtree(work, ignore_errors=True)
            raise RegistryError(f"image {reference}: {err}") from None
        except BaseException:
            shutil.rmtree(work, ignore_errors=True)
            raise
        image = self.load(digest)
        assert image is not None
        return image

    def clean_partial(self) -> None:
        """Remove unpack directories a crashed worker left behind."""
        for p in self.images.glob(".unpack-*"):
            shutil.rmtree(p, ignore_errors=True)
        for p in self.blobs.glob("*.partial"):
            p.unlink(missing_ok=True)
