"""What the CLI promises a user, against a real `clrk dev` (no worker here): it says
what is wrong at once instead of waiting out its timeout."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import CLRK, DevServer, start_dev

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
    # As with kubectl, --validate=warn applies without the field and prints the warning.
    warned = subprocess.run([CLRK, "apply", "-f", str(manifest), "--validate=warn",
                             "--kubeconfig", str(dev.kubeconfig)],
                            capture_output=True, text=True, timeout=60)
    assert warned.returncode == 0, warned.stderr
    assert "Warning: unknown field 'spec.timout'" in warned.stderr, warned.stderr
    dev.kubectl("delete", "ta", "typo-first", "typo-last")
    # kubectl's own server-side apply of the corrected file then works, with no conflict.
    docs[0]["spec"].pop("timout")
    docs[2]["spec"]["template"]["spec"].pop("imagee")
    manifest.write_text(yaml.safe_dump_all(docs))
    dev.kubectl("apply", "--server-side", "-f", str(manifest))


def test_a_second_dev_on_the_same_data_dir_names_the_first(shared_dev_server: DevServer
                                                           ) -> None:
    """One line naming the running instance, before anything (the registry, chDB) is
    touched; the first one keeps serving."""
    dev = shared_dev_server
    r = subprocess.run([CLRK, "dev", "--data-dir", str(dev.data_dir), "--no-tui",
                        "--workers", "0", "--registry-port", "0", "--port", "0"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1, (r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert "already running" in lines[0] and str(dev.data_dir) in lines[0]
    assert f"pid {dev.proc.pid}" in lines[0] and dev.url in lines[0]
    assert dev.ready()


def test_one_data_dir_everywhere(shared_dev_server: DevServer, tmp_path: Path) -> None:
    """--data-dir (or CLRK_HOME) names `clrk dev`'s state for every command: dev, dev
    status, image, --local; before or after the subcommand."""
    dev = shared_dev_server
    home = {k: v for k, v in os.environ.items() if k not in ("KUBECONFIG", "CLRK_HOME")}
    empty = tmp_path / "nothing-here"

    def clrk(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([CLRK, *args], capture_output=True, text=True, timeout=60,
                              env={**home, **env})

    for args in (["dev", "--data-dir", str(dev.data_dir), "status"],
                 ["--data-dir", str(dev.data_dir), "dev", "status"],
                 ["dev", "status", "--data-dir", str(dev.data_dir)]):
        r = clrk(*args)
        assert r.returncode == 0 and dev.url in r.stdout, (args, r.stdout, r.stderr)
    assert dev.url in clrk("dev", "status", CLRK_HOME=str(dev.data_dir)).stdout
    r = clrk("dev", "status", CLRK_HOME=str(empty))
    assert r.returncode == 1 and str(empty) in r.stderr and len(r.stderr.splitlines()) == 1
    for args, env in ((["agents", "list", "--local", "--data-dir", str(dev.data_dir)], {}),
                      (["agents", "list", "--local"], {"CLRK_HOME": str(dev.data_dir)})):
        r = clrk(*args, **env)
        assert r.returncode == 0, (args, r.stderr)
    r = clrk("get", "wp", "--local", "--data-dir", str(empty))
    assert r.returncode == 1 and str(empty / "kubeconfig.host") in r.stderr
    # `clrk image` reads the same dir: its registry is this instance's.
    assert clrk("image", "ls", "--data-dir", str(dev.data_dir)).returncode == 0


def test_dev_apply_is_strict_too(tmp_path: Path) -> None:
    """`clrk dev --apply` refuses the typo with the field named and applies the rest."""
    manifest = tmp_path / "agents.yaml"
    manifest.write_text(yaml.safe_dump_all([
        {"apiVersion": "clrk.apoxy.dev/v1alpha1", "kind": "TaskAgent",
         "metadata": {"name": name}, "spec": {"template": {"spec": {"image": "x:1"}}, **extra}}
        for name, extra in (("dev-typo", {"timout": "60s"}), ("dev-good", {}))]))
    dev = start_dev(tmp_path / "clrk", "--apply", str(manifest))
    try:
        log = dev.log.read_text()
        assert "taskagent.clrk.apoxy.dev/dev-good serverside-applied" in log
        assert "dev-typo" in log and "timout" in log, log
        assert dev.kubectl("get", "ta", "dev-typo", check=False).returncode != 0
    finally:
        dev.stop()
