"""What the CLI promises a user, against a real `clrk dev` (no worker here): it says
what is wrong at once instead of waiting out its timeout."""

from __future__ import annotations

import subprocess

import pytest
import yaml

from tests.conftest import CLRK, DevServer

pytestmark = pytest.mark.e2e


def test_run_task_without_a_ready_worker_fails_at_once(shared_dev_server: DevServer) -> None:
    """No worker to run it: exit 77 (Rejected) with the reason, not a pull bar for the
    whole --timeout. (The subprocess timeout is a bound, far below --timeout.)"""
    dev = shared_dev_server
    dev.kubectl("apply", "-f", "-", input=yaml.safe_dump({
        "apiVersion": "clrk.apoxy.dev/v1alpha1", "kind": "TaskAgent",
        "metadata": {"name": "no-worker"},
        "spec": {"template": {"spec": {"image": "127.0.0.1:1/nowhere:0.1"}}}}))
    r = subprocess.run([CLRK, "agents", "run-task", "no-worker", "--timeout",
                        "600", "--kubeconfig", str(dev.kubeconfig)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 77, (r.returncode, r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "pulling" not in r.stderr
    assert "worker" in lines[0].lower(), lines
