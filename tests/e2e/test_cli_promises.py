"""What the CLI promises a user, against a real `clrk dev` (no worker here): it says
what is wrong at once instead of waiting out its timeout."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

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


def test_apply_refuses_a_typo_and_reports_every_document(shared_dev_server: DevServer,
                                                         tmp_path: Path) -> None:
    """`timout:` is refused with the field named (not dropped, not recorded in
    managedFields for a later conflict); the good documents of the same file are
    applied, each bad one reported, and the exit is non-zero."""
    dev = shared_dev_server
    docs: list[dict[str, Any]] = [{"apiVersion": "clrk.apoxy.dev/v1alpha1", "kind": "TaskAgent",
             "metadata": {"name": name},
             "spec": {"template": {"spec": {"image": "127.0.0.1:1/x:1"}}}}
            for name in ("typo-first", "typo-good", "typo-last")]
    docs[0]["spec"]["timout"] = "60s"
    docs[2]["spec"]["template"]["spec"]["imagee"] = "y"
    manifest = tmp_path / "agents.yaml"
    manifest.write_text(yaml.safe_dump_all(docs))
    r = subprocess.run([CLRK, "apply", "-f", str(manifest), "--kubeconfig",
                        str(dev.kubeconfig)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert r.stdout.strip() == "taskagent.clrk.apoxy.dev/typo-good serverside-applied", \
        r.stdout
    errors = r.stderr.strip().splitlines()
    assert len(errors) == 3 and "Traceback" not in r.stderr, r.stderr
    assert "typo-first" in errors[0] and "timout" in errors[0], errors
    assert "typo-last" in errors[1] and "imagee" in errors[1], errors
    assert errors[2] == "error: 2 of 3 objects were not applied", errors
    missing = dev.kubectl("get", "taskagent", "typo-first", check=False)
    assert missing.returncode != 0 and "NotFound" in missing.stderr
    # kubectl's own server-side apply of the corrected file then works, with no conflict.
    docs[0]["spec"].pop("timout")
    docs[2]["spec"]["template"]["spec"].pop("imagee")
    manifest.write_text(yaml.safe_dump_all(docs))
    dev.kubectl("apply", "--server-side", "-f", str(manifest))
