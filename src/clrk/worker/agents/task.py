"""One TaskAgent execution: image, sandbox, envelope on stdin, stdout back, an outcome.

The outcome maps onto the HTTP contract: exit 0 -> 200, non-zero -> 500 with the exit
code, past spec.timeout -> 504, and onto Invocation phases.
"""

from __future__ import annotations

import logging
import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from clrk.api.agents import AgentTemplate, EgressRef, TaskAgent, gateway_of
from clrk.api.meta import parse_duration
from clrk.egress.attribution import Attribution, Attributions
from clrk.worker.agents import envelope
from clrk.worker.dns import DNSResponder
from clrk.worker.egress import EgressPlane
from clrk.worker.images.reference import ReferenceError
from clrk.worker.images.registry import RegistryError
from clrk.worker.images.store import ImageStore
from clrk.worker.metadata import MetadataService, Slot
from clrk.worker.sandbox.network import Network, SandboxNet
from clrk.worker.sandbox.runner import Result, Runtime, Sandbox
from clrk.worker.sandbox.spec import RunSpec, SpecError, run_spec, service_env

log = logging.getLogger("clrk.worker.task")
Phase = Literal["Succeeded", "Failed", "Timeout"]


@dataclass(frozen=True)
class Outcome:
    phase: Phase
    http_status: int
    exit_code: int | None
    reason: str
    warm: bool = False  # ran in a sandbox started ahead by the warm pool

    @property
    def headers(self) -> dict[str, str]:
        if self.exit_code is not None and self.exit_code != 0:
            return {"X-Clrk-Exit-Code": str(self.exit_code)}
        return {}


@dataclass(frozen=True)
class Trace:
    """The invocation span an execution runs under (its sandbox's ``TRACEPARENT``)."""

    trace_id: str  # 32 hex digits
    span_id: str  # 16 hex digits

    @classmethod
    def new(cls) -> Trace:
        """Ids for a sandbox started before its invocation is known (the warm pool)."""
        return cls(secrets.token_hex(16), secrets.token_hex(8))

    @classmethod
    def of(cls, invocation: dict[str, str] | None) -> Trace | None:
        """The ids the API server gave the invocation, if it gave any."""
        if not invocation or not invocation.get("traceId") or not invocation.get("spanId"):
            return None
        return cls(invocation["traceId"], invocation["spanId"])

    @property
    def traceparent(self) -> str:
        """W3C trace-context, sampled."""
        return f"00-{self.trace_id}-{self.span_id}-01"


@dataclass
class Networking:
    """A worker's sandbox networking, the metadata service and the egress plane."""

    network: Network
    metadata: MetadataService
    egress: EgressPlane | None = None
    dns: DNSResponder | None = None
    attribution: Attributions = field(default_factory=lambda: Attributions())

    async def dns_verdict(self, sandbox: str, name: str) -> str | bool:
        net = self.network.by_address.get(sandbox)
        if net is None or self.egress is None:
            return False
        return await self.egress.dns_verdict(net.egress_port, name)

    def udp_verdict(self, sandbox: str, address: str, port: int
                    ) -> tuple[tuple[str, int] | None, str, str]:
        net = self.network.by_address.get(sandbox)
        if net is None or self.egress is None:
            return None, "", "unknown sandbox"
        who = self.attribution.of(sandbox)
        return self.egress.udp_verdict(net.egress_port, address, port,
                                       (who.agent_kind, who.agent_name) if who else None)

    def udp_record(self, item: dict[str, Any]) -> None:
        net = self.network.by_address.get(str(item.get("sandbox")))
        gw = self.egress.gateway_at(net.egress_port) if (
            self.egress is not None and net is not None and net.egress_port) else None
        if self.egress is not None and gw is not None:
            self.egress.udp_flow({**item, "gateway": gw["metadata"]["name"]})

    def egress_port(self, namespace: str, template: AgentTemplate,
                    refs: list[EgressRef] | None) -> int | None:
        """The agent's gateway (the template's egressRefs, else the agent's; the first
        one): its TCP goes there. None: no gateway, or one this worker does not know."""
        gateway = gateway_of(template, refs)
        if gateway is None or self.egress is None:
            return None
        return self.egress.port_for(namespace, gateway)


@dataclass
class Prepared:
    """A started sandbox waiting for its one execution (the agent blocked on stdin, or
    on ``GET /v1/event``), with its network."""

    sandbox: Sandbox
    exec_key: str
    net: SandboxNet | None = None
    slot: Slot | None = None
    warm: bool = False
    trace: Trace | None = None  # its TRACEPARENT, fixed when it started


class PrepareError(Exception):
    """The sandbox cannot be made: the message is the Invocation's reason."""


async def resolve(images: ImageStore, template: AgentTemplate,
                  digest: str | None = None) -> RunSpec:
    """The image pulled (or found cached) and the run spec built from the template. With
    the digest the revision's tag resolved to, a cached image needs no registry at all."""
    try:
        image = images.load(digest) if digest else None
        return run_spec(template.spec, image or await images.pull(template.spec.image))
    except (RegistryError, ReferenceError) as err:
        raise PrepareError(f"ImagePullFailed: {err}") from None
    except SpecError as err:
        raise PrepareError(f"InvalidSpec: {err}") from None


async def start(runtime: Runtime, spec: RunSpec, metadata_mode: bool,
                networking: Networking | None, daemon: bool = False,
                egress_port: int | None = None,
                attribution: Attribution | None = None,
                trace: Trace | None = None) -> Prepared:
    """A sandbox with its own netns and veth, started and waiting for its input.
    ``attribution`` (known up front for a DaemonAgent run) is recorded before the agent
    runs, so its first connection is already attributed. ``trace`` becomes its
    TRACEPARENT (omitted when None)."""
    exec_key = uuid.uuid4().hex
    if networking is None:
        if metadata_mode:
            raise PrepareError("InvalidSpec: delivery mode Metadata needs a worker with "
                               "sandbox networking")
        return Prepared(await runtime.start(spec), exec_key, trace=trace)
    ca = None
    if egress_port is not None and networking.egress is not None:
        try:
            ca = await networking.egress.ca_at(egress_port)
        except Exception as err:  # the API may be away: TLS it intercepts will not verify
            log.warning("cannot read the gateway's CA: %s", err)
    net = await networking.network.setup(exec_key, egress_port)
    port = networking.network.metadata_port
    # The sandbox's only nameserver is the worker's responder (behind its veth).
    spec = replace(spec, netns=net.netns_path, ca_bundle=ca,
                   resolv_conf=f"nameserver {net.host_ip}\noptions timeout:2 attempts:2\n",
                   env=service_env(spec.env, f"http://{net.host_ip}:{port}",
                                   f"http://[{net.host_ip6}]:{port}",
                                   trace.traceparent if trace else None))
    if attribution is not None:
        networking.attribution.record(net.sandbox_addresses, attribution)
    slot = networking.metadata.reserve(
        *net.sandbox_addresses, kind="daemon" if daemon else "event" if metadata_mode
        else "stdin", who=attribution)
    try:
        return Prepared(await runtime.start(spec), exec_key, net, slot, trace=trace)
    except BaseException:
        await _release_net(networking, exec_key, net)
        raise


async def prepare(runtime: Runtime, images: ImageStore, template: AgentTemplate,
                  metadata_mode: bool, networking: Networking | None,
                  digest: str | None = None, egress_port: int | None = None,
                  trace: Trace | None = None) -> Prepared:
    return await start(runtime, await resolve(images, template, digest), metadata_mode,
                       networking, egress_port=egress_port, trace=trace)


async def _release_net(networking: Networking, exec_key: str, net: SandboxNet) -> None:
    networking.metadata.unregister(*net.sandbox_addresses)
    if networking.dns is not None:
        networking.dns.forget(net.sandbox_ip)
    networking.network.teardown_later(exec_key, net)


async def release(prepared: Prepared, networking: Networking | None) -> None:
    """Give back what :func:`prepare` took besides the sandbox (which cleans itself);
    the network goes in the background, off the response path."""
    if networking is not None and prepared.net is not None:
        await _release_net(networking, prepared.exec_key, prepared.net)


async def discard(prepared: Prepared, networking: Networking | None) -> None:
    await prepared.sandbox.discard()
    await release(prepared, networking)


async def execute(runtime: Runtime, images: ImageStore, agent: TaskAgent,
                  template: AgentTemplate, event: dict[str, Any],
                  on_stdout: Callable[[bytes], None], on_stderr: Callable[[bytes], None],
                  networking: Networking | None = None,
                  on_start: Callable[[], None] = lambda: None,
                  warm: Prepared | None = None, digest: str | None = None,
                  invocation: dict[str, str] | None = None) -> Outcome:
    """Run one execution to the end, in ``warm`` if given. Failures before the agent
    starts are Failed outcomes."""
    timeout = parse_duration(agent.spec.timeout).total_seconds()
    metadata_mode = agent.spec.delivery.mode == "Metadata"
    prepared = warm
    if prepared is None:
        try:
            port = networking.egress_port(agent.metadata["namespace"], template,
                                          agent.spec.egress_refs) if networking else None
            prepared = await prepare(runtime, images, template, metadata_mode, networking,
                                     digest, port, Trace.of(invocation))
        except PrepareError as err:
            return Outcome("Failed", 500, None, str(err))
    held: list[bytes] = []
    if networking is not None and prepared.net is not None and invocation:
        _attribute(networking, prepared, agent, invocation)
    try:
        on_start()
        if prepared.slot is not None:
            prepared.slot.deliver(event)
        stdin = b"" if metadata_mode else envelope.encode(event)
        result = await prepared.sandbox.finish(
            stdin, timeout, held.append if metadata_mode else on_stdout, on_stderr)
    finally:
        await release(prepared, networking)
    if metadata_mode:
        # The posted reply is the response body; without one, stdout is.
        slot = prepared.slot
        on_stdout(slot.response if slot is not None and slot.response is not None
                  else b"".join(held))
    return replace(_outcome(agent, result), warm=prepared.warm)


def _attribute(networking: Networking, prepared: Prepared, agent: TaskAgent,
               invocation: dict[str, str]) -> None:
    """The sandbox's connections and OTLP exports are this invocation's, under the trace
    its TRACEPARENT names (a warm sandbox's own, which the Invocation adopts)."""
    assert prepared.net is not None
    trace = prepared.trace or Trace.of(invocation) or Trace("", "")
    who = Attribution(agent.metadata["namespace"], "TaskAgent", agent.metadata["name"],
                      invocation.get("name", ""), trace.trace_id, trace.span_id)
    networking.attribution.record(prepared.net.sandbox_addresses, who)
    if prepared.slot is not None:
        prepared.slot.attribute(who)


def _outcome(agent: TaskAgent, result: Result) -> Outcome:
    if result.timed_out:
        return Outcome("Timeout", 504, None,
                       f"DeadlineExceeded: the agent ran past spec.timeout ({agent.spec.timeout})")
    if result.exit_code == 0:
        return Outcome("Succeeded", 200, 0, "")
    reason = result.reason or f"the agent exited with code {result.exit_code}"
    return Outcome("Failed", 500, result.exit_code, reason)
