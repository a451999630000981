"""One TaskAgent execution: image, sandbox, envelope on stdin, stdout back, an outcome.

The outcome maps onto the HTTP contract: exit 0 -> 200, non-zero -> 500 with the exit
code, past spec.timeout -> 504, and onto Invocation phases.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Literal

from clrk.api.agents import AgentTemplate, TaskAgent
from clrk.api.meta import parse_duration
from clrk.worker.agents import envelope
from clrk.worker.images.reference import ReferenceError
from clrk.worker.images.registry import RegistryError
from clrk.worker.images.store import ImageStore
from clrk.worker.metadata import MetadataService
from clrk.worker.sandbox.network import Network
from clrk.worker.sandbox.runner import Result, Runtime
from clrk.worker.sandbox.spec import SpecError, run_spec

Phase = Literal["Succeeded", "Failed", "Timeout"]


@dataclass(frozen=True)
class Outcome:
    phase: Phase
    http_status: int
    exit_code: int | None
    reason: str

    @property
    def headers(self) -> dict[str, str]:
        if self.exit_code is not None and self.exit_code != 0:
            return {"X-Clrk-Exit-Code": str(self.exit_code)}
        return {}


@dataclass
class Networking:
    """A worker's sandbox networking and the metadata service behind it."""

    network: Network
    metadata: MetadataService


async def execute(runtime: Runtime, images: ImageStore, agent: TaskAgent,
                  template: AgentTemplate, event: dict[str, Any],
                  on_stdout: Callable[[bytes], None], on_stderr: Callable[[bytes], None],
                  networking: Networking | None = None) -> Outcome:
    """Run one execution to the end. Failures before the agent starts are Failed outcomes."""
    timeout = parse_duration(agent.spec.timeout).total_seconds()
    try:
        image = await images.pull(template.spec.image)
        spec = run_spec(template.spec, image)
    except (RegistryError, ReferenceError, SpecError) as err:
        return Outcome("Failed", 500, None, f"ImagePullFailed: {err}"
                       if not isinstance(err, SpecError) else f"InvalidSpec: {err}")
    metadata_mode = agent.spec.delivery.mode == "Metadata"
    stdin = b"" if metadata_mode else envelope.encode(event)
    if networking is None:
        if metadata_mode:
            return Outcome("Failed", 500, None, "InvalidSpec: delivery mode Metadata needs a "
                           "worker with sandbox networking")
        result = await runtime.run(spec, stdin, timeout, on_stdout, on_stderr)
        return _outcome(agent, result)
    exec_key = uuid.uuid4().hex
    net = await networking.network.setup(exec_key)
    url = f"http://{net.host_ip}:{networking.network.metadata_port}/v1"
    spec = replace(spec, netns=net.netns_path,
                   env=[*spec.env, f"CLRK_METADATA_URL={url}"])
    slot = networking.metadata.register(net.sandbox_ip, event)
    held: list[bytes] = []
    try:
        result = await runtime.run(spec, stdin, timeout,
                                   held.append if metadata_mode else on_stdout, on_stderr)
    finally:
        networking.metadata.unregister(net.sandbox_ip)
        await networking.network.teardown(exec_key, net)
    if metadata_mode:
        # The posted reply is the response body; without one, stdout is.
        on_stdout(slot.response if slot.response is not None else b"".join(held))
    return _outcome(agent, result)


def _outcome(agent: TaskAgent, result: Result) -> Outcome:
    if result.timed_out:
        return Outcome("Timeout", 504, None,
                       f"DeadlineExceeded: the agent ran past spec.timeout ({agent.spec.timeout})")
    if result.exit_code == 0:
        return Outcome("Succeeded", 200, 0, "")
    reason = result.reason or f"the agent exited with code {result.exit_code}"
    return Outcome("Failed", 500, result.exit_code, reason)
