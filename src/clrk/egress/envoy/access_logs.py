"""Reading Envoy's access logs, where the records of the connections and calls Envoy
served alone come from: each line taken once, also across worker restarts (the offsets
taken are kept in a file), and the files rotated before they grow large (renamed,
Envoy told to reopen its logs, the old file read to its end, then removed).
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

ROTATE_BYTES = 64 << 20  # a log is rotated once this much of it has been taken
READ_BYTES = 1 << 20  # at most, per file and read
SETTLED_SECONDS = 2.0  # a rotated file unwritten this long gets no more lines


@dataclass(frozen=True)
class Chunk:
    """Complete lines of one file, from ``start``."""
    path: Path
    start: int
    data: bytes


def _rotated(path: Path) -> Path:
    return path.with_name(path.name + ".1")


class AccessLogs:
    def __init__(self, offsets_file: Path, reopen: Callable[[], Awaitable[None]],
                 rotate_bytes: int = ROTATE_BYTES) -> None:
        self.offsets_file = offsets_file
        self.reopen = reopen  # makes Envoy reopen its access logs
        self.rotate_bytes = rotate_bytes
        self._offsets: dict[str, int] = {}
        with contextlib.suppress(OSError, ValueError):
            loaded = json.loads(offsets_file.read_text())
            self._offsets = {str(k): int(v) for k, v in loaded.items()}

    def pending(self, path: Path) -> list[Chunk]:
        """Lines of ``path`` not taken yet: its rotated file's last ones first."""
        return [c for p in (_rotated(path), path) if (c := self._read(p)) is not None]

    def _read(self, path: Path) -> Chunk | None:
        try:
            with path.open("rb") as f:
                size = os.fstat(f.fileno()).st_size
                start = self._offsets.get(str(path), 0)
                if start > size:  # not the file the offset was taken in
                    start = 0
                f.seek(start)
                data = f.read(READ_BYTES)
        except FileNotFoundError:
            return None
        complete = data[:data.rfind(b"\n") + 1]
        return Chunk(path, start, complete) if complete else None

    def taken(self, chunks: list[Chunk]) -> None:
        """These lines are shipped: never again."""
        for chunk in chunks:
            self._offsets[str(chunk.path)] = chunk.start + len(chunk.data)
        self._save()

    async def rotate(self, path: Path) -> None:
        """Rotate ``path`` once enough of it is taken; remove its rotated file once that
        is taken to its end and Envoy writes to the new one."""
        old = _rotated(path)
        try:
            stat = old.stat()
        except FileNotFoundError:
            if self._offsets.get(str(path), 0) >= self.rotate_bytes:
                try:
                    path.rename(old)
                except FileNotFoundError:  # gone: whatever comes next starts anew
                    self._offsets.pop(str(path))
                    self._save()
                    return
                self._offsets[str(old)] = self._offsets.pop(str(path))
                self._save()
                await self.reopen()
            return
        if not path.exists():  # Envoy has not reopened yet (or was not reached)
            await self.reopen()
        elif time.time() - stat.st_mtime > SETTLED_SECONDS and \
                self._offsets.get(str(old), 0) >= stat.st_size:
            old.unlink()
            self._offsets.pop(str(old), None)
            self._save()

    def _save(self) -> None:
        self.offsets_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.offsets_file.with_name(self.offsets_file.name + ".tmp")
        tmp.write_text(json.dumps(self._offsets))
        tmp.replace(self.offsets_file)
