"""An agent's resources.pids becomes its sandbox's host pids limit by the measured model.

The figures are the ones benchmarks/sandbox_pids.py printed (docs/benchmarks.md,
2026-12-02, with sandbox networking); if the model changes, they say whether the default
still lets the agents the issue names run, and whether a maximal sandbox leaves room.
"""

from __future__ import annotations

from pathlib import Path

from clrk.api.agents import PIDS_DEFAULT, PIDS_MAX, SandboxSpec
from clrk.worker.images.store import Image
from clrk.worker.sandbox import bundle, cgroups
from clrk.worker.sandbox.runner import end_reason
from clrk.worker.sandbox.spec import HOST_TASKS_BASE, HOST_TASKS_PER_PID, host_pids, run_spec

# Host tasks measured for one sandbox (docs/benchmarks.md; the larger of the runs with and
# without sandbox networking).
IDLE = 57  # an idle busybox agent
ONE_AT_A_TIME = 132  # a shell running 100 short pipelines, one after another
CHILDREN_64 = 682  # 64 sleeping busybox children
THREADS_128 = 342  # 128 Python threads computing without the GIL (53 of them the idle agent)
PIPELINES_16 = 3354  # 16 short pipelines at a time, 100 rounds (make -j16)


def test_conversion_is_the_linear_model() -> None:
    assert host_pids(1) == HOST_TASKS_BASE + HOST_TASKS_PER_PID
    assert [host_pids(n) for n in (1, 2, 3)] == [host_pids(1) + HOST_TASKS_PER_PID * i
                                                  for i in range(3)]


def test_the_smallest_limit_runs_an_agent_that_runs_commands() -> None:
    assert host_pids(1) > max(IDLE, ONE_AT_A_TIME)


def test_the_default_runs_64_children_and_128_threads_at_once() -> None:
    both = CHILDREN_64 + THREADS_128 - 53
    assert host_pids(PIDS_DEFAULT) >= 1.2 * both
    assert host_pids(PIDS_DEFAULT) >= 1.2 * PIPELINES_16
    assert PIDS_DEFAULT >= 128 + 64  # and so does the count the user reads


def test_sandboxes_at_the_limits_leave_the_host_room() -> None:
    """All sandboxes together get three quarters of a 32768-pid host: room for five fork
    bombs at the default, or two at the maximum, before the shared cap is reached."""
    share = int(32768 * cgroups.PARENT_PIDS_SHARE)
    assert 5 * host_pids(PIDS_DEFAULT) <= share
    assert 2 * host_pids(PIDS_MAX) <= share


def test_the_bundle_and_run_spec_carry_the_host_limit(tmp_path: Path) -> None:
    image = Image("x", "sha256:" + "0" * 64, {"config": {"Entrypoint": ["/bin/sh"]}}, tmp_path)
    spec = run_spec(SandboxSpec.model_validate({"image": "x", "resources": {"pids": 40}}),
                    image)
    assert (spec.pids, spec.host_pids) == (40, host_pids(40))
    config = bundle.config(spec, "/clrk/x")
    assert config["linux"]["resources"]["pids"] == {"limit": host_pids(40)}
    default = run_spec(SandboxSpec.model_validate({"image": "x"}), image)
    assert default.pids == PIDS_DEFAULT


def test_a_reached_limit_explains_any_failing_status() -> None:
    """The OOM killer or a refused fork may take a stub or the sentry instead of the
    agent: gVisor then ends with its own status (2 for a Go panic), not 137."""
    image = Image("x", "sha256:0", {}, Path("/nonexistent"))
    spec = run_spec(SandboxSpec.model_validate({"image": "x", "command": ["sh"]}), image)
    assert end_reason(spec, 2, None, "", True, b"").startswith("PidsLimit")
    assert end_reason(spec, 2, None, "killed", False, b"").startswith("OOMKilled")
    assert end_reason(spec, 137, None, "near", False, b"").startswith("OOMKilled")
    # Memory that only came near its limit does not explain an agent's own failure.
    assert end_reason(spec, 1, None, "near", False, b"") == ""
    assert end_reason(spec, 0, None, "killed", True, b"") == ""
    assert end_reason(spec, None, 5, "", False, b"") == "timed out after 5s"
    assert end_reason(spec, 143, None, "", False, b"") == "killed by signal 15"
