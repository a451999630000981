"""The worker's sweep removes a sandbox whose runsc state a kill -9 left torn.

A kill -9 of `clrk dev` that lands while a sandbox is being created can leave runsc's
state file truncated: `runsc kill` and `runsc delete` then fail on it ("unexpected end
of JSON input") and it stayed in `runsc list` through every later sweep, while the
worker logged that it had removed it.
"""

from __future__ import annotations

import logging
import subprocess

import pytest

from clrk.worker.images.store import Image
from clrk.worker.sandbox.runner import Runtime
from tests.integration.test_sandbox import crashed_sandbox, image, runtime

__all__ = ["image", "runtime"]  # the fixtures, shared with test_sandbox


async def test_sweep_removes_a_sandbox_with_a_torn_state_file(
        runtime: Runtime, image: Image, caplog: pytest.LogCaptureFixture) -> None:
    sid = "clrk-torn00000001"
    await crashed_sandbox(runtime, image, sid)
    states = list((runtime.state_dir / "runsc").glob(f"{sid}_*.state"))
    assert states, list((runtime.state_dir / "runsc").iterdir())
    with states[0].open("r+b") as f:  # torn mid-write, as the kill left it
        f.truncate(100)
    code, out = await runtime._runsc("delete", "--force", sid)
    assert code != 0 and b"JSON" in out  # runsc itself cannot remove it

    caplog.set_level(logging.WARNING, "clrk.worker.sandbox")
    fresh = Runtime(runtime.state_dir)
    assert await fresh.sweep() == [sid]
    assert await fresh.sandboxes() == []
    assert not list((runtime.state_dir / "runsc").glob(f"{sid}_*"))
    assert "removed its state by hand" in caplog.text
    alive = subprocess.run(["pgrep", "-f", sid], capture_output=True, text=True).stdout
    assert alive.strip() == "", alive
