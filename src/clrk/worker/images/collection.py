"""Keeping a worker's image store within its disk, as kubelet's image garbage
collection does: past the high mark of the disk's use, the images unused longest
go until the use is under the low mark. Without it every image version an agent
was ever given would stay on the worker's disk."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clrk.worker.images.store import ImageStore

log = logging.getLogger(__name__)

EVERY_SECONDS = 30.0


@dataclass(frozen=True)
class DiskMarks:
    """Percentages of the store's file system in use (kubelet's defaults)."""

    high: int = 85  # collection starts above it
    low: int = 80  # and stops at it

    def __post_init__(self) -> None:
        if not 0 <= self.low < self.high <= 100:
            raise ValueError(f"the image disk marks need 0 <= low < high <= 100, not "
                             f"low {self.low} and high {self.high}")


def percent_used(path: Path, usage: Callable[[Path], Any] = shutil.disk_usage) -> float:
    du = usage(path)
    return 100.0 * du.used / du.total if du.total else 0.0


def collect_once(store: ImageStore, in_use: set[Path], marks: DiskMarks,
                 usage: Callable[[Path], Any] = shutil.disk_usage) -> list[str]:
    """Remove images if the disk is past the high mark; the digests removed."""
    if percent_used(store.root, usage) <= marks.high:
        return []
    removed = store.collect(in_use, lambda: percent_used(store.root, usage) > marks.low)
    used = percent_used(store.root, usage)
    if removed:
        log.info("image store: removed %d image(s) unused longest (%s); disk %.0f%% used",
                 len(removed), ", ".join(removed), used)
    if used > marks.low:
        log.warning("image store: disk still %.0f%% used (low mark %d%%): the images left "
                    "are in use or were used in the last minutes", used, marks.low)
    return removed


async def keep_within(store: ImageStore, in_use: Callable[[], set[Path]], marks: DiskMarks,
                      stop: asyncio.Event) -> None:
    """Check the disk every 30 s until ``stop``."""
    while not stop.is_set():
        try:
            await asyncio.to_thread(collect_once, store, in_use(), marks)
        except Exception:  # the next round tries again; the worker goes on
            log.exception("image store: collection failed")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), EVERY_SECONDS)
