"""Pulling an agent's image as soon as its revision appears, so the first invocation does
not pay for it; the revision's status says whether the image can be had, and which
digest its tag meant."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from lightkube import AsyncClient
from lightkube.types import PatchType

from clrk.api.revision import AgentSandboxRevision
from clrk.client import follow, resource_class
from clrk.controllers.conditions import set_condition
from clrk.worker.images.reference import ReferenceError
from clrk.worker.images.registry import RegistryError
from clrk.worker.images.store import ImageStore

log = logging.getLogger("clrk.worker.prepull")
PROGRESS_SECONDS = 0.5


class Prepuller:
    def __init__(self, client: AsyncClient, images: ImageStore, namespace: str) -> None:
        self.client = client
        self.namespace = namespace  # the pool's: its agents' revisions
        self.images = images
        self.res = resource_class(AgentSandboxRevision)
        self._seen: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def run(self, stop: asyncio.Event) -> None:
        watcher = asyncio.create_task(self._watch())
        await stop.wait()
        watcher.cancel()
        for t in [watcher, *self._tasks]:
            t.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t

    async def _watch(self) -> None:
        await follow(self.client, self.res, self.namespace, self._seen_revision, log,
                     "revision")

    def _seen_revision(self, op: str, rev: dict[str, Any]) -> None:
        uid = rev["metadata"].get("uid", "")
        if op == "DELETED" or uid in self._seen:
            return
        self._seen.add(uid)
        task = asyncio.create_task(self._pull(rev))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _report(self, md: dict[str, Any], image: str) -> None:
        """The pull's progress in the revision's status (what `clrk` shows as a bar)."""
        while True:
            await asyncio.sleep(PROGRESS_SECONDS)
            p = self.images.progress.get(image)
            if p is None:  # still resolving (or done: the pull task cancels this one)
                continue
            with contextlib.suppress(Exception):
                await self.client.patch(
                    self.res.Status, md["name"], {"status": {"imagePull": {
                        "completedBytes": p.completed, "totalBytes": p.total,
                        "layers": p.layers, "done": False}}},
                    namespace=md["namespace"], patch_type=PatchType.MERGE)

    async def _pull(self, rev: dict[str, Any]) -> None:
        md = rev["metadata"]
        image = rev["spec"]["template"]["spec"]["image"]
        status = dict(rev.get("status") or {})
        reporter = asyncio.create_task(self._report(md, image))
        try:
            pulled = await self.images.pull(image)
        except (RegistryError, ReferenceError) as err:
            conds = set_condition(status.get("conditions") or [], "Ready", False,
                                  "ImagePullFailed", str(err), None)
            patch: dict[str, Any] = {"conditions": conds}
        else:
            conds = set_condition(status.get("conditions") or [], "Ready", True, "ImagePulled",
                                  f"{image} is {pulled.digest}", None)
            patch = {"conditions": conds, "imageDigest": pulled.digest,
                     "imagePull": {"done": True}}
        finally:
            reporter.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reporter
        try:
            await self.client.patch(self.res.Status, md["name"], {"status": patch},
                                    namespace=md["namespace"], patch_type=PatchType.MERGE)
        except Exception as err:  # the revision may be gone; the API may refuse: say so
            log.warning("could not report the pull of %s in revision %s/%s: %s", image,
                        md["namespace"], md["name"], err)
