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

from clrk.api.agents import PIDS_DEFAULT, SandboxSpec
from clrk.worker.images.registry import RegistryClient
from clrk.worker.images.store import Image, ImageStore
from clrk.worker.sandbox import bundle, cgroups
from clrk.worker.sandbox.runner import Result, Runtime
from clrk.worker.sandbox.spec import SpecError, host_pids, run_spec
from tests.images import Registry, build, busybox_recipe, python_base


@pytest.fixture(scope="module")
def image(registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> Image:
    registry.push("test/sandbox", "1", build(busybox_recipe(Entrypoint=["/bin/sh", "-c"])))
    store = ImageStore(tmp_path_factory.mktemp("images"),
                       RegistryClient(insecure={registry.host}))
    return asyncio.run(store.pull(f"{registry.host}/test/sandbox:1"))


@pytest.fixture(scope="module")
def python_image(registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> Image:
    registry.push("test/python", "1", python_base())
    store = ImageStore(tmp_path_factory.mktemp("images"),
                       RegistryClient(insecure={registry.host}))
    return asyncio.run(store.pull(f"{registry.host}/test/python:1"))


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
        "resources": {"limits": {"cpu": "500m", "memory": "96Mi"}, "pids": 100}}), image)
    assert runtime.roots_in_use() == set()
    sandbox = await runtime.start(spec)
    # While it lives, the image store may not remove its root.
    assert runtime.roots_in_use() == {image.rootfs}
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
        assert read("pids", "pids.max") == str(host_pids(100))  # host tasks for 100
        # All the sandboxes of the host together leave a quarter of its pids free.
        parent = (cgroups.ROOT / "pids" / cgroups.PARENT / "pids.max").read_text().strip()
        assert parent.isdigit() and int(parent) <= cgroups.parent_pids_limit()
        members = {int(p) for p in read("memory", "cgroup.procs").split()}
        assert sandbox.proc.pid in members and len(members) >= 3  # runsc, gofer, sentry
    finally:
        result = await sandbox.finish(b"done", 30, lambda _: None, lambda _: None)
    assert result.exit_code == 0
    await runtime.drain()
    assert runtime.roots_in_use() == set()


async def test_fork_bomb_ends_only_its_own_execution(runtime: Runtime, image: Image) -> None:
    """Each process in the sandbox costs host tasks (ptrace stubs); at its pids cgroup's
    limit the sandbox ends, with a reason in the agent's units, and nothing else does: a
    sandbox already running beside it on the same runtime, and one started after it,
    finish normally. At the default limits a bomb of sleeping children reaches ~92% of the
    default memory (512Mi) when it reaches its pids limit (measured), so which ends it
    first can vary; with room in memory the pids limit is the one that binds."""
    neighbour = await runtime.start(run_spec(
        SandboxSpec.model_validate({"image": "x", "args": ["cat"]}), image))
    result, out, _ = await run(runtime, image, timeout=60, args=[
        "echo started; while :; do sleep 1000 & done"],
        resources={"limits": {"memory": "1Gi"}})
    assert out.startswith("started")
    assert result.exit_code not in (None, 0) and result.reason.startswith("PidsLimit"), result
    assert f"limit of {PIDS_DEFAULT} processes and threads (resources.pids)" in result.reason
    out_b: list[bytes] = []
    beside = await neighbour.finish(b"still here", 30, out_b.append, lambda _: None)
    assert (beside.exit_code, b"".join(out_b)) == (0, b"still here")
    again, out, _ = await run(runtime, image, args=["echo alive"])
    assert again.exit_code == 0 and out.strip() == "alive"


# N sleeping children at once, each found alive once all are started, then ended.
FAN_OUT = ("i=0; while [ $i -lt {n} ]; do sleep 1000 & pids=\"$pids $!\"; i=$((i+1)); done; "
           "n=0; for p in $pids; do kill -0 $p && n=$((n+1)); done; echo running=$n; "
           "kill $pids; echo done")


async def test_64_concurrent_children_fit_the_default(runtime: Runtime, image: Image) -> None:
    result, out, err = await run(runtime, image, args=[FAN_OUT.format(n=64)])
    assert (result.exit_code, out.split()) == (0, ["running=64", "done"]), (result, err)


async def test_a_low_pids_limit_is_enforced(runtime: Runtime, image: Image) -> None:
    """resources.pids: 8 is enforced: 4 children (6 processes with the shell and the
    init) fit, a fan-out of 64 ends with PidsLimit naming the agent's own limit."""
    result, out, _ = await run(runtime, image, args=[FAN_OUT.format(n=4)],
                               resources={"pids": 8})
    assert (result.exit_code, out.split()) == (0, ["running=4", "done"]), result
    result, out, _ = await run(runtime, image, timeout=60, args=[FAN_OUT.format(n=64)],
                               resources={"pids": 8})
    assert result.exit_code not in (None, 0) and "done" not in out
    assert result.reason.startswith("PidsLimit: the agent reached its limit of 8 processes")


# A multiprocessing pool of 64 worker processes, all busy at once: each task waits at a
# barrier that only opens when all 64 are running, then computes.
POOL = """
import multiprocessing as mp, zlib
def work(_):
    barrier.wait()
    return len(zlib.compress(bytes(1 << 16), 1))
def init(b):
    global barrier
    barrier = b
ctx = mp.get_context("fork")
b = ctx.Barrier(64)
with ctx.Pool(64, initializer=init, initargs=(b,)) as pool:
    print(len(pool.map(work, range(64), chunksize=1)))
"""
# 128 threads alive at once (a barrier of all of them), then computing without the GIL.
THREADS = """
import threading, zlib
n = 128
barrier = threading.Barrier(n + 1)
done = []
def work():
    barrier.wait()
    for _ in range(10):
        zlib.compress(bytes(1 << 16), 1)
    done.append(1)
ts = [threading.Thread(target=work) for _ in range(n)]
for t in ts:
    t.start()
barrier.wait()
print(threading.active_count() - 1)
for t in ts:
    t.join()
print(len(done))
"""


async def test_python_pool_of_64_processes_fits_the_default(runtime: Runtime,
                                                            python_image: Image) -> None:
    # 64 Python interpreters need more than the default 512Mi: memory is not the point here.
    result, out, err = await run(runtime, python_image, timeout=120,
                                 command=["python3", "-c", POOL],
                                 resources={"limits": {"memory": "2Gi"}})
    assert (result.exit_code, out.split()) == (0, ["64"]), (result, err)


async def test_python_128_threads_fit_the_default(runtime: Runtime,
                                                  python_image: Image) -> None:
    result, out, err = await run(runtime, python_image, timeout=120,
                                 command=["python3", "-c", THREADS])
    assert (result.exit_code, out.split()) == (0, ["128", "128"]), (result, err)


async def test_tmp_is_capped_and_root_is_read_only(runtime: Runtime, image: Image) -> None:
    _, out, _ = await run(runtime, image, args=[
        "dd if=/dev/zero of=/tmp/fill bs=1M count=200 2>/dev/null; "
        "ls -l /tmp/fill | tr -s ' ' | cut -d' ' -f5; "
        "echo x > /rootfile && echo WROTE || echo READONLY"])
    assert "READONLY" in out
    sizes = [int(w) for w in out.split() if w.isdigit()]
    assert sizes and 0 < sizes[0] <= 64 * 1024 * 1024, out


async def crashed_sandbox(runtime: Runtime, image: Image, sid: str) -> Path:
    """A sandbox whose `runsc run` (its "worker") was killed mid-execution; its bundle."""
    spec = run_spec(SandboxSpec.model_validate({"image": "x", "args": ["sleep 120"]}), image)
    bdir = bundle.write(runtime.state_dir / "bundles" / sid, spec, f"/{cgroups.PARENT}/{sid}")
    proc = subprocess.Popen([*runtime._base(), "run", "--bundle", str(bdir), sid],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    for _ in range(100):
        if sid in await runtime.sandboxes():
            break
        await asyncio.sleep(0.1)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    return bdir


async def test_sweep_removes_what_a_crashed_worker_left(runtime: Runtime, image: Image,
                                                        tmp_path: Path) -> None:
    sid = "clrk-crashed0001"
    bdir = await crashed_sandbox(runtime, image, sid)
    fresh = Runtime(runtime.state_dir)
    assert sid in await fresh.sweep()
    assert await fresh.sandboxes() == []
    assert not bdir.exists()
    assert not cgroups.path("memory", sid).exists()
