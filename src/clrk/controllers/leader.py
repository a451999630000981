"""Leader election with a ``coordination.k8s.io/v1`` Lease, as client-go does it.

Two controller managers may run at once (a rollout, a stuck node): both would reconcile
the same objects and fight. The one holding the Lease reconciles; the other waits. A
holder renews every ``retry_period``; a candidate takes the Lease over once the record it
last saw has not changed for ``lease_duration`` (judged by this process's own clock, never
by comparing the holder's timestamps with ours, so clock skew cannot cut a lease short).
A leader that cannot renew within ``renew_deadline`` stops leading.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from lightkube import ApiError, AsyncClient
from lightkube.models.coordination_v1 import LeaseSpec
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.coordination_v1 import Lease

log = logging.getLogger("clrk.leader")


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass
class LeaderElection:
    client: AsyncClient
    namespace: str
    name: str
    identity: str
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0

    async def run(self, lead: Callable[[asyncio.Event], Awaitable[None]],
                  stop: asyncio.Event) -> None:
        """Wait for the Lease, then run ``lead(lost)`` until ``stop`` or until the Lease is
        lost (``lost`` is then set, and ``lead`` must return)."""
        started = time.monotonic()
        if not await self._acquire(stop):
            return
        log.info("%s leads %s/%s (waited %.1fs)", self.identity, self.namespace, self.name,
                 time.monotonic() - started)
        lost = asyncio.Event()
        renewing = asyncio.create_task(self._renew(stop, lost))
        try:
            await lead(lost)
        finally:
            renewing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewing
            if not lost.is_set():
                await self._release()

    # ---- the record ---------------------------------------------------------------------

    async def _get(self) -> Lease | None:
        try:
            return await self.client.get(Lease, self.name, namespace=self.namespace)
        except ApiError as err:
            if err.status.code == 404:
                return None
            raise

    def _spec(self, previous: LeaseSpec | None) -> LeaseSpec:
        now = _now()
        taking_over = previous is None or previous.holderIdentity != self.identity
        transitions = (previous.leaseTransitions or 0) if previous is not None else 0
        return LeaseSpec(
            holderIdentity=self.identity,
            leaseDurationSeconds=int(self.lease_duration),
            acquireTime=now if taking_over or previous is None else previous.acquireTime,
            renewTime=now,
            leaseTransitions=transitions + (1 if taking_over and previous is not None
                                            and previous.holderIdentity else 0))

    async def _try_acquire_or_renew(self, seen: dict[str, object]) -> bool:
        lease = await self._get()
        if lease is None:
            try:
                await self.client.create(Lease(
                    metadata=ObjectMeta(name=self.name, namespace=self.namespace),
                    spec=self._spec(None)))
                return True
            except ApiError as err:
                if err.status.code == 409:  # another candidate created it first
                    return False
                raise
        spec = lease.spec or LeaseSpec()
        record = (spec.holderIdentity, spec.renewTime, spec.acquireTime)
        if record != seen.get("record"):
            seen["record"], seen["at"] = record, time.monotonic()
        held_by_other = bool(spec.holderIdentity) and spec.holderIdentity != self.identity
        duration = spec.leaseDurationSeconds or self.lease_duration
        observed_at = seen["at"]
        assert isinstance(observed_at, float)
        if held_by_other and time.monotonic() - observed_at < duration:
            return False
        lease.spec = self._spec(spec)
        try:  # replace carries resourceVersion: a concurrent change makes this a 409
            await self.client.replace(lease)
        except ApiError as err:
            if err.status.code == 409:
                return False
            raise
        if held_by_other:
            log.info("%s took %s/%s over from %s", self.identity, self.namespace, self.name,
                     spec.holderIdentity)
        return True

    async def _acquire(self, stop: asyncio.Event) -> bool:
        seen: dict[str, object] = {}
        announced = False
        while not stop.is_set():
            try:
                if await self._try_acquire_or_renew(seen):
                    return True
                if not announced:
                    record = seen.get("record")
                    holder = record[0] if isinstance(record, tuple) else "?"
                    log.info("%s waits for %s/%s, held by %s", self.identity,
                             self.namespace, self.name, holder)
                    announced = True
            except (ApiError, OSError) as err:
                log.warning("leader election: %s", err)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.retry_period)
        return False

    async def _renew(self, stop: asyncio.Event, lost: asyncio.Event) -> None:
        seen: dict[str, object] = {}
        last_renewed = time.monotonic()
        while not stop.is_set():
            await asyncio.sleep(self.retry_period)
            try:
                if await self._try_acquire_or_renew(seen):
                    last_renewed = time.monotonic()
                    continue
            except (ApiError, OSError) as err:
                log.warning("leader election: renewing: %s", err)
            if time.monotonic() - last_renewed > self.renew_deadline:
                log.error("%s lost %s/%s: not renewed for %.0fs", self.identity,
                          self.namespace, self.name, self.renew_deadline)
                lost.set()
                return

    async def _release(self) -> None:
        """On a clean stop, hand the Lease on at once instead of after its duration."""
        with contextlib.suppress(ApiError, OSError):
            lease = await self._get()
            if lease is not None and lease.spec and lease.spec.holderIdentity == self.identity:
                lease.spec.holderIdentity = None
                lease.spec.leaseDurationSeconds = 1
                await self.client.replace(lease)
