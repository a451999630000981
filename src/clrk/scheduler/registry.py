"""Workers report by heartbeat; the scheduler picks among the fresh ones.

Pick order (design §2): a worker with a warm sandbox for the revision, then one with
the image cached, then spare capacity, then least in-flight.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

STALE_AFTER = 6.0  # three missed heartbeats (every 2 s)


@dataclass
class WorkerInfo:
    name: str
    namespace: str
    pool: str
    url: str
    capacity: int
    in_flight: int = 0
    draining: bool = False
    cached_images: list[str] = field(default_factory=list)
    warm_revisions: list[str] = field(default_factory=list)
    warm_sandboxes: int = 0
    token: str = field(default="", repr=False)  # what the worker wants on a dispatch
    seen: float = field(default_factory=time.monotonic)

    @classmethod
    def from_heartbeat(cls, namespace: str, pool: str, doc: dict[str, Any]) -> WorkerInfo:
        try:
            return cls(name=str(doc["name"]), namespace=namespace, pool=pool,
                       url=str(doc["url"]), capacity=int(doc["capacity"]),
                       in_flight=int(doc.get("inFlight", 0)),
                       draining=bool(doc.get("draining", False)),
                       cached_images=list(doc.get("cachedImages") or []),
                       warm_revisions=list(doc.get("warmRevisions") or []),
                       warm_sandboxes=int(doc.get("warmSandboxes", 0)),
                       token=str(doc.get("dispatchToken") or ""))
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"bad heartbeat: {err}") from None


class WorkerRegistry:
    def __init__(self, stale_after: float = STALE_AFTER) -> None:
        self.stale_after = stale_after
        self._workers: dict[tuple[str, str, str], WorkerInfo] = {}
        self._reserved: dict[str, int] = {}  # dispatches sent since the last heartbeat

    def heartbeat(self, info: WorkerInfo) -> None:
        self._workers[(info.namespace, info.pool, info.name)] = info
        self._reserved.pop(info.name, None)

    def ready(self, namespace: str, pool: str) -> list[WorkerInfo]:
        now = time.monotonic()
        return [w for (ns, p, _), w in self._workers.items()
                if ns == namespace and p == pool and not w.draining
                and now - w.seen < self.stale_after]

    def fresh_names(self) -> set[str]:
        """Every worker whose heartbeat is fresh and not draining, in any pool."""
        now = time.monotonic()
        return {w.name for w in self._workers.values()
                if not w.draining and now - w.seen < self.stale_after}

    def workers(self) -> list[tuple[WorkerInfo, float]]:
        """Every worker heard from, with its heartbeat's age in seconds (stale ones
        included: a console shows them as such)."""
        now = time.monotonic()
        return [(w, now - w.seen) for w in self._workers.values()]

    def ready_workers(self, namespace: str, pool: str) -> int:
        return len(self.ready(namespace, pool))

    def _load(self, w: WorkerInfo) -> int:
        return w.in_flight + self._reserved.get(w.name, 0)

    def candidates(self, namespace: str, pool: str, revision: str = "",
                   image_digest: str = "") -> list[WorkerInfo]:
        """Ready workers with room, best first."""
        ready = [w for w in self.ready(namespace, pool) if self._load(w) < w.capacity]
        return sorted(ready, key=lambda w: (not self._warm(w, revision),
                                            image_digest not in w.cached_images,
                                            self._load(w) / max(1, w.capacity),
                                            self._load(w)))

    def _warm(self, w: WorkerInfo, revision: str) -> bool:
        """Whether the worker likely still has an idle warm sandbox for the revision: it
        had one at its last heartbeat, and fewer dispatches went to it since than it had
        warm sandboxes (a burst is not all sent after one warm sandbox)."""
        return revision in w.warm_revisions and self._reserved.get(w.name, 0) < w.warm_sandboxes

    def reserve(self, w: WorkerInfo) -> None:
        self._reserved[w.name] = self._reserved.get(w.name, 0) + 1

    def release(self, w: WorkerInfo) -> None:
        if self._reserved.get(w.name):
            self._reserved[w.name] -= 1

    def full(self, namespace: str, pool: str) -> bool:
        """Workers exist but none has room: the caller should get 429, not 503."""
        ready = self.ready(namespace, pool)
        return bool(ready) and all(self._load(w) >= w.capacity for w in ready)
