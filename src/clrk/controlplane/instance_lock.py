"""One control plane per data dir. Two would share the SQLite store, the telemetry
database (chDB takes one process per path) and the worker state; the second fails
deep inside one of them with a message about locks. Instead it is refused first, in
one line that names the running one.
"""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path
from types import TracebackType

LOCK_FILE = "clrk.lock"


class AlreadyRunning(Exception):
    """Another process holds the data dir."""


class InstanceLock:
    """An exclusive ``flock`` on ``<data dir>/clrk.lock``, released when the process
    ends however it ends; the file says who holds it (pid, API URL once known)."""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise AlreadyRunning(self._describe_holder()) from None
        self._fd = fd
        self.record()

    def record(self, **details: str) -> None:
        """Write who holds the lock (pid, and e.g. the API URL once it is known)."""
        if self._fd is None:
            return
        body = json.dumps({"pid": os.getpid(), **details}).encode()
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, body, 0)

    def _describe_holder(self) -> str:
        try:
            holder = json.loads(self.path.read_text() or "{}")
        except (OSError, ValueError):
            holder = {}
        where = ", ".join(f"{k} {v}" for k, v in holder.items())
        return (f"clrk dev is already running with data dir {self.path.parent}"
                + (f" ({where})" if where else "")
                + ": stop it, or pass another --data-dir")

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> InstanceLock:
        self.acquire()
        return self

    def __exit__(self, kind: type[BaseException] | None, err: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()
