"""What a sandbox runs, derived from an agent template and its image.

The env rules are the product's contract: the image's ENV and CMD never reach the
agent; ENTRYPOINT is used only when the template sets no command; the agent sees
exactly what its manifest declares plus PATH, the CA variables and, on a worker with
sandbox networking, CLRK_METADATA_URL(_V6), OTEL_EXPORTER_OTLP_ENDPOINT and
TRACEPARENT (the last two only where the manifest does not set them itself).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from clrk.api.agents import PIDS_DEFAULT, SandboxSpec
from clrk.api.meta import parse_quantity
from clrk.worker.images.store import Image

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
CA_VARIABLES = ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "NODE_EXTRA_CA_CERTS",
                "GIT_SSL_CAINFO")
TMP_SIZE = 64 * 1024 * 1024


class SpecError(ValueError):
    """The template and image cannot make a runnable process; the message says why."""


@dataclass(frozen=True)
class RunSpec:
    rootfs: Path
    argv: list[str]
    env: list[str]
    cwd: str
    cpu: float  # cores
    memory: int  # bytes
    pids: int = PIDS_DEFAULT  # processes and threads inside (resources.pids)
    tmp_size: int = TMP_SIZE
    hostname: str = "sandbox"
    extra_mounts: list[tuple[Path, str]] = field(default_factory=list)  # (host file, path)
    netns: str | None = None  # path of the sandbox's network namespace; None: no network
    resolv_conf: str | None = None  # mounted at /etc/resolv.conf (from the bundle dir)
    ca_bundle: bytes | None = None  # mounted over every CA bundle of the image

    @property
    def host_pids(self) -> int:
        """The sandbox's pids cgroup limit, in host tasks."""
        return host_pids(self.pids)


# Host tasks of a sandbox on gVisor's ptrace platform (the pids cgroup counts threads),
# measured by benchmarks/sandbox_pids.py (docs/benchmarks.md, 2026-12-02; the model is in
# docs/architecture.md, "Process limit"). An idle sandbox holds 49-57 (runsc, the gofer,
# the sentry's threads, the stubs of the init and the agent), and one that runs a command
# at a time ~130: stubs are pooled, and keep a thread for every sentry thread that ever
# ran them. A process that lives alongside others adds 5-10 (its stub, the stub's threads,
# sentry threads), a thread at most 2 (a sentry thread and a stub thread while it runs);
# short-lived processes in parallel add more, growing with their number (16 pipelines at
# a time: ~65 per process). 256 (the default) -> 4224 host tasks, which covers 64
# children and 128 threads at once (~850) and 16 pipelines at a time (3354) with room.
HOST_TASKS_BASE = 128
HOST_TASKS_PER_PID = 16


def host_pids(pids: int) -> int:
    """The host tasks a sandbox may hold for ``pids`` processes and threads inside."""
    return HOST_TASKS_BASE + HOST_TASKS_PER_PID * pids


def argv_for(template: SandboxSpec, image: Image) -> list[str]:
    if template.command:
        return [*template.command, *(template.args or [])]
    if image.entrypoint:
        return [*image.entrypoint, *(template.args or [])]
    raise SpecError(f"image {image.reference} has no ENTRYPOINT and "
                    "spec.template.spec.command is not set: set command (the image CMD is "
                    "ignored)")


def env_for(template: SandboxSpec, metadata_url: str | None = None,
            metadata_url_v6: str | None = None) -> list[str]:
    env: dict[str, str] = {"PATH": DEFAULT_PATH}
    for var in CA_VARIABLES:
        env[var] = CA_BUNDLE
    if metadata_url:
        env["CLRK_METADATA_URL"] = metadata_url
    if metadata_url_v6:
        env["CLRK_METADATA_URL_V6"] = metadata_url_v6
    for e in template.env or []:
        env[e.name] = e.value
    return [f"{k}={v}" for k, v in env.items()]


def service_env(env: list[str], base: str, base_v6: str, traceparent: str | None
                ) -> list[str]:
    """``env`` plus what the worker serves the sandbox at ``base`` (its metadata
    service): the metadata URLs, the OTLP endpoint (the SDKs append /v1/traces and
    /v1/logs) and the invocation's trace context. A manifest that sets the OTLP endpoint
    or TRACEPARENT itself keeps its own."""
    declared = {entry.split("=", 1)[0] for entry in env}
    ours = {"OTEL_EXPORTER_OTLP_ENDPOINT": base}
    if traceparent:
        ours["TRACEPARENT"] = traceparent
    return [*env, f"CLRK_METADATA_URL={base}/v1", f"CLRK_METADATA_URL_V6={base_v6}/v1",
            *(f"{k}={v}" for k, v in ours.items() if k not in declared)]


def run_spec(template: SandboxSpec, image: Image, metadata_url: str | None = None,
             metadata_url_v6: str | None = None) -> RunSpec:
    limits = template.resources.limits
    return RunSpec(
        rootfs=image.rootfs,
        argv=argv_for(template, image),
        env=env_for(template, metadata_url, metadata_url_v6),
        cwd=template.working_dir or image.working_dir,
        cpu=parse_quantity(limits.cpu),
        memory=int(parse_quantity(limits.memory)),
        pids=template.resources.pids,
    )
