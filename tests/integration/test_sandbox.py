"""Real gVisor sandboxes: the env contract, limits, timeouts, and leaving nothing behind."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from clrk.api.agents import SandboxSpec
from clrk.worker.images.registry import RegistryClient
from clrk.worker.images.store import Image, ImageStore
from clrk.worker.sandbox import bundle, cgroups
from clrk.worker.sandbox.runner import Result, Runtime
from clrk.worker.sandbox.spec import PIDS_LIMIT, SpecError, run_spec
from tests.images import Registry, build, busybox_recipe


@pytest.fixture(scope="module")
def image(registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> Image:
    registry.push("test/sandbox", "1", build(busybox_recipe(Entrypoint=["/bin/sh", "-c"])))
    store = ImageStore(tmp_path_factory.mktemp("images"),
                       RegistryClient(insecure={registry.host}))
    return asyncio.run(store.pull(f"{registry.host}/test/sandbox:1"))


@pytest.fixture
async def runtime(tmp_path: Path) -> AsyncIterator[Runtime]:
    rt = Runtime(tmp_path / "state")
    try:
        yield rt
    finally:
        await rt.drain()
        await rt.sweep()


async def run(rt: Runtime, image: Image, stdin: bytes = b"", timeout: float = 60,
              **template: Any) -> tuple[Result, str, str]:
    spec = SandboxSpec.model_validate({"image": "x", **template})
    out: list[bytes] = []
    err: list[bytes] = []
    result = await rt.run(run_spec(spec, image), stdin, timeout, out.append, err.append)
    return result, b"".join(out).decode(), b"".join(err).decode()


async def test_env_contract(runtime: Runtime, image: Image) -> None:
    result, out, _ = await run(runtime, image, args=["env"],
                               env=[{"name": "GREETING", "value": "hi"}])
    assert result.exit_code == 0
    env = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    assert env["GREETING"] == "hi"  # declared env is visible
    assert "IMAGE_ONLY" not in env  # image ENV is stripped
    assert env["SSL_CERT_FILE"] == env["REQUESTS_CA_BUNDLE"] == \
        "/etc/ssl/certs/ca-certificates.crt"
    assert "PATH" in env
    # The sandbox's init (a shell that reports the exit) adds nothing of its own.
    result, out, _ = await run(runtime, image, command=["env"])
    assert not {"SHLVL", "PWD", "OLDPWD"} & {line.split("=")[0] for line in out.splitlines()}
    # ENTRYPOINT (/bin/sh -c) is used with args; the image CMD (echo from-cmd) is ignored.
    result, out, _ = await run(runtime, image, args=["echo entry:$0"])
    assert out.strip() == "entry:/bin/sh" and "from-cmd" not in out
    # command replaces the ENTRYPOINT.
    result, out, _ = await run(runtime, image, command=["/bin/echo", "direct"])
    assert out.strip() == "direct"


async def test_no_entrypoint_and_no_command_is_a_clear_error(registry: Registry,
                                                             tmp_path: Path) -> None:
    registry.push("test/noentry", "1", build(busybox_recipe()))
    store = ImageStore(tmp_path / "img", RegistryClient(insecure={registry.host}))
    img = await store.pull(f"{registry.host}/test/noentry:1")
    with pytest.raises(SpecError, match="no ENTRYPOINT"):
        run_spec(SandboxSpec.model_validate({"image": "x"}), img)


async def test_stdin_stdout_stderr_and_exit_codes(runtime: Runtime, image: Image) -> None:
    result, out, err = await run(runtime, image, stdin=b"payload",
                                 args=["cat; echo oops >&2; exit 3"])
    assert (result.exit_code, out, err) == (3, "payload", "oops\n")
    assert not result.timed_out


async def test_output_is_complete_when_the_exit_is_reported(runtime: Runtime,
                                                             image: Image) -> None:
    """The answer comes at the init's exit report, before gVisor's teardown: whatever
    the agent wrote is all there, and the sandbox is still removed afterwards."""
    result, out, err = await run(runtime, image, args=[
        "head -c 3000000 /dev/zero | tr '\\0' a; echo; echo done >&2; exit 5"])
    assert result.exit_code == 5 and len(out) == 3000001 and set(out.strip()) == {"a"}
    assert err == "done\n"
    result, _, _ = await run(runtime, image, command=["/no/such/agent"])
    assert result.exit_code == 127 and "was not found in the image" in result.reason
    await runtime.drain()
    assert await runtime.sandboxes() == []
    assert list((runtime.state_dir / "bundles").iterdir()) == []


async def test_timeout_kills_and_leaves_nothing(runtime: Runtime, image: Image) -> None:
    result, _, _ = await run(runtime, image, args=["sleep 60"], timeout=1)
    assert result.timed_out and result.exit_code is None and "timed out" in result.reason
    await runtime.drain()
    assert await runtime.sandboxes() == []
    assert list((runtime.state_dir / "bundles").iterdir()) == []
    assert not list((cgroups.ROOT / "memory" / cgroups.PARENT).glob("clrk-*"))
    procs = subprocess.run(["pgrep", "-f", "runsc-sandbox"], capture_output=True, text=True)
    assert str(runtime.state_dir) not in procs.stdout


async def test_memory_bomb_is_oom_killed(runtime: Runtime, image: Image) -> None:
    result, _, _ = await run(runtime, image,
                             args=["a=xxxxxxxxxxxxxxxx; while :; do a=$a$a; done"],
                             resources={"limits": {"memory": "64Mi"}})
    assert result.exit_code == 137
    assert result.reason.startswith("OOMKilled")


async def test_limits_come_from_resources(runtime: Runtime, image: Image) -> None:
    """The sandbox's processes (runsc, gofer, sentry) sit in cgroups with the template's
    limits, whoever made the groups (the worker, or runsc on hosts without cgroup v1)."""
    spec = run_spec(SandboxSpec.model_validate({
        "image": "x", "args": ["cat"],
        "resources": {"limits": {"cpu": "500m", "memory": "96Mi"}}}), image)
    sandbox = await runtime.start(spec)
    try:
        def read(controller: str, name: str) -> str:
            path = cgroups.path(controller, sandbox.sid) / name
            return path.read_text().strip() if path.exists() else ""

        for _ in range(200):  # runsc forks the gofer and the sentry as it boots
            if len(read("memory", "cgroup.procs").split()) >= 3:
                break
            await asyncio.sleep(0.05)
        assert read("memory", "memory.limit_in_bytes") == str(96 * 1024 * 1024)
        assert (read("cpu", "cpu.cfs_quota_us"), read("cpu", "cpu.cfs_period_us")) == \
            ("50000", "100000")
        assert read("pids", "pids.max") == str(PIDS_LIMIT)
        members = {int(p) for p in read("memory", "cgroup.procs").split()}
        assert sandbox.proc.pid in members and len(members) >= 3  # runsc, gofer, sentry
    finally:
        result = await sandbox.finish(b"done", 30, lambda _: None, lambda _: None)
    assert result.exit_code == 0


async def test_fork_bomb_is_contained(runtime: Runtime, image: Image) -> None:
    # Each process in the sandbox costs host tasks (ptrace stubs); at the cgroup's pids
    # limit the sandbox ends, with a reason that says so, long before 2000 processes.
    result, out, _ = await run(runtime, image, timeout=30, args=[
        "i=0; while [ $i -lt 2000 ]; do sleep 30 & i=$((i+1)); echo $i > /tmp/n; done; "
        "echo all-spawned"])
    assert "all-spawned" not in out
    assert result.exit_code not in (None, 0) and result.reason.startswith("PidsLimit"), result
    assert str(PIDS_LIMIT) in result.reason
    # The host is fine: another sandbox runs normally right after.
    again, out, _ = await run(runtime, image, args=["echo alive"])
    assert again.exit_code == 0 and out.strip() == "alive"


async def test_tmp_is_capped_and_root_is_read_only(runtime: Runtime, image: Image) -> None:
    _, out, _ = await run(runtime, image, args=[
        "dd if=/dev/zero of=/tmp/fill bs=1M count=200 2>/dev/null; "
        "ls -l /tmp/fill | tr -s ' ' | cut -d' ' -f5; "
        "echo x > /rootfile && echo WROTE || echo READONLY"])
    assert "READONLY" in out
    sizes = [int(w) for w in out.split() if w.isdigit()]
    assert sizes and 0 < sizes[0] <= 64 * 1024 * 1024, out


async def test_sweep_removes_what_a_crashed_worker_left(runtime: Runtime, image: Image,
                                                        tmp_path: Path) -> None:
    spec = run_spec(SandboxSpec.model_validate({"image": "x", "args": ["sleep 120"]}), image)
    sid = "clrk-crashed0001"
    bdir = bundle.write(runtime.state_dir / "bundles" / sid, spec, f"/{cgroups.PARENT}/{sid}")
    proc = subprocess.Popen([*runtime._base(), "run", "--bundle", str(bdir), sid],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    for _ in range(100):
        if sid in await runtime.sandboxes():
            break
        await asyncio.sleep(0.1)
    os.kill(proc.pid, signal.SIGKILL)  # the "worker" dies mid-execution
    proc.wait()
    fresh = Runtime(runtime.state_dir)
    assert sid in await fresh.sweep()
    assert await fresh.sandboxes() == []
    assert not bdir.exists()
    assert not cgroups.path("memory", sid).exists()
