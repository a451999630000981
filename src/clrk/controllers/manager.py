"""Runs every controller against one API server."""

from __future__ import annotations

import asyncio
import logging

from lightkube import AsyncClient

from clrk.api.agents import DaemonAgent, TaskAgent
from clrk.controllers.agents import agent_controller
from clrk.controllers.attachments import attachment_controller
from clrk.controllers.cron import Invoke, cron_controller
from clrk.controllers.gateway_ca import gateway_controller
from clrk.controllers.runtime import Runner
from clrk.controllers.worker_workloads import WorkloadSettings
from clrk.controllers.workerpool import NoWorkers, WorkerRegistry, workerpool_controller

log = logging.getLogger("clrk.controllers")


class ControllerManager:
    def __init__(self, client: AsyncClient, concurrency: int = 2,
                 registry: WorkerRegistry | None = None, invoke: Invoke | None = None,
                 workloads: WorkloadSettings | None = None) -> None:
        self.client = client
        self.controllers = [
            agent_controller(client, TaskAgent, concurrency),
            agent_controller(client, DaemonAgent, concurrency, registry),
            gateway_controller(client, concurrency),
            attachment_controller(client, concurrency),
            workerpool_controller(client, registry or NoWorkers(), concurrency, workloads),
        ]
        if invoke is not None:
            self.controllers.append(cron_controller(client, invoke, concurrency))

    async def run(self, stop: asyncio.Event) -> None:
        log.info("controllers started: %s", ", ".join(c.name for c in self.controllers))
        await asyncio.gather(*(Runner(self.client, c).run(stop) for c in self.controllers))
