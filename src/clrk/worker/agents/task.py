"""One TaskAgent execution: image, sandbox, envelope on stdin, stdout back, an outcome.

The outcome maps onto the HTTP contract: exit 0 -> 200, non-zero -> 500 with the exit
code, past spec.timeout -> 504, and onto Invocation phases.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from clrk.api.agents import AgentTemplate, TaskAgent
from clrk.api.meta import parse_duration
from clrk.worker.agents import envelope
from clrk.worker.images.reference import ReferenceError
from clrk.worker.images.registry import RegistryError
from clrk.worker.images.store import ImageStore
from clrk.worker.sandbox.runner import Runtime
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


async def execute(runtime: Runtime, images: ImageStore, agent: TaskAgent,
                  template: AgentTemplate, event: dict[str, Any],
                  on_stdout: Callable[[bytes], None], on_stderr: Callable[[bytes], None],
                  metadata_url: str | None = None) -> Outcome:
    """Run one execution to the end. Failures before the agent starts are Failed outcomes."""
    timeout = parse_duration(agent.spec.timeout).total_seconds()
    try:
        image = await images.pull(template.spec.image)
        spec = run_spec(template.spec, image, metadata_url)
    except (RegistryError, ReferenceError, SpecError) as err:
        return Outcome("Failed", 500, None, f"ImagePullFailed: {err}"
                       if not isinstance(err, SpecError) else f"InvalidSpec: {err}")
    stdin = envelope.encode(event) if agent.spec.delivery.mode == "Stdin" else b""
    result = await runtime.run(spec, stdin, timeout, on_stdout, on_stderr)
    if result.timed_out:
        return Outcome("Timeout", 504, None,
                       f"DeadlineExceeded: the agent ran past spec.timeout ({agent.spec.timeout})")
    if result.exit_code == 0:
        return Outcome("Succeeded", 200, 0, "")
    reason = result.reason or f"the agent exited with code {result.exit_code}"
    return Outcome("Failed", 500, result.exit_code, reason)
