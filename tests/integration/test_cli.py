"""The `clrk` console script as a user runs it, against a real `clrk dev`."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import CLRK, ROOT, DevServer, start_dev

SPEC = ROOT / "examples" / "spec"


def test_apply_get_delete(shared_dev_server: DevServer, tmp_path: Path) -> None:
    s = shared_dev_server
    r = s.clrk("apply", "-f", str(SPEC))
    assert "taskagent.clrk.apoxy.dev/word-count serverside-applied" in r.stdout
    assert "daemonagent.clrk.apoxy.dev/echo-bot serverside-applied" in r.stdout
    out = s.clrk("get", "ta").stdout
    assert "NAME" in out and "POOL" in out and "word-count" in out and "AGE" in out
    assert "word-count" in s.clrk("get", "taskagents.clrk.apoxy.dev", "word-count").stdout
    doc = yaml.safe_load(s.clrk("get", "ta", "word-count", "-o", "yaml").stdout)
    assert doc["spec"]["timeout"] == "60s"
    assert s.clrk("get", "ta", "-o", "name").stdout.strip().splitlines() == [
        "taskagent/word-count"]
    wide = s.clrk("get", "ta", "-o", "wide").stdout
    assert "SCHEDULE" in wide
    assert "NAMESPACE" in s.clrk("get", "egw", "-A").stdout
    # apply from stdin, then delete by name and by file
    manifest = (SPEC / "ratelimitpolicy-anthropic-1rps.yaml").read_text().replace(
        "anthropic-1rps", "from-stdin")
    assert "serverside-applied" in s.clrk("apply", "-f", "-", input=manifest).stdout
    assert 'deleted' in s.clrk("delete", "rlp", "from-stdin").stdout
    f = tmp_path / "m.yaml"
    f.write_text(manifest)
    s.clrk("apply", "-f", str(f))
    assert "deleted" in s.clrk("delete", "-f", str(f)).stdout
    r = s.clrk("get", "rlp", "from-stdin", check=False)
    assert r.returncode != 0 and "not found" in r.stderr


def test_secret_set(shared_dev_server: DevServer, tmp_path: Path) -> None:
    s = shared_dev_server
    key_file = tmp_path / "key"
    key_file.write_bytes(b"file-secret")
    r = s.clrk("secret", "set", "creds", "--from-env", "api-key=MY_KEY",
               "--from-literal", "user=bob", "--from-file", f"cert={key_file}",
               env={"MY_KEY": "sk-123"})
    assert r.stdout.strip() == "secret/creds configured"
    doc = yaml.safe_load(s.kubectl("get", "secret", "creds", "-o", "yaml").stdout)
    assert doc["data"] == {"api-key": "c2stMTIz", "user": "Ym9i", "cert": "ZmlsZS1zZWNyZXQ="}
    r = s.clrk("secret", "set", "creds", "--from-env", "k=UNSET_VAR_XYZ", check=False)
    assert r.returncode != 0 and "UNSET_VAR_XYZ" in r.stderr and "Traceback" not in r.stderr


def test_agents_and_pools(shared_dev_server: DevServer) -> None:
    s = shared_dev_server
    s.clrk("apply", "-f", str(SPEC / "taskagent-word-count.yaml"),
           "-f", str(SPEC / "daemonagent-echo-bot.yaml"))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        out = s.clrk("agents", "list").stdout
        if "word-count-00001" in out and "echo-bot-00001" in out:
            break
        time.sleep(0.2)
    assert "TaskAgent" in out and "DaemonAgent" in out and "word-count-00001" in out
    got = s.clrk("agents", "get", "word-count").stdout
    assert "TaskAgent default/word-count" in got and "word-count-00001" in got
    assert "WorkerPoolReady" in got
    assert yaml.safe_load(s.clrk("agents", "get", "echo-bot", "-o", "yaml").stdout)[
        "kind"] == "DaemonAgent"
    r = s.clrk("agents", "get", "nobody", check=False)
    assert r.returncode == 1 and 'named "nobody"' in r.stderr
    pools = s.clrk("pools", "list").stdout
    assert "default" in pools
    assert yaml.safe_load(s.clrk("pools", "get", "default", "-o", "json").stdout)[
        "spec"]["maxExecutionsPerWorker"] >= 1


@pytest.mark.parametrize(("args", "stdin", "needle"), [
    (["apply", "-f", "/nonexistent.yaml"], None, "does not exist"),
    (["apply", "-f", "-"], "apiVersion: clrk.apoxy.dev/v1alpha1\nkind: Gizmo\nmetadata: "
     "{name: x}\n", "unknown kind 'Gizmo'"),
    (["apply", "-f", "-"], "kind: [unclosed\n", "invalid YAML"),
    (["apply", "-f", "-"], "apiVersion: clrk.apoxy.dev/v1alpha1\nkind: TaskAgent\nmetadata: "
     "{name: bad}\nspec: {timeout: -1s, template: {spec: {image: busybox}}}\n",
     "spec.timeout"),
    (["get", "gizmos"], None, 'resource type "gizmos"'),
    (["get", "ta", "-o", "toml"], None, "unknown output format"),
])
def test_errors_are_one_line(shared_dev_server: DevServer, args: list[str],
                             stdin: str | None, needle: str) -> None:
    r = shared_dev_server.clrk(*args, input=stdin, check=False)
    assert r.returncode != 0
    assert needle in r.stderr
    assert "Traceback" not in r.stderr and "Traceback" not in r.stdout
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_server_down_is_a_clear_error(tmp_path: Path) -> None:
    s = start_dev(tmp_path / "clrk")
    kubeconfig = s.kubeconfig
    assert s.stop() == 0
    r = subprocess.run([CLRK, "--kubeconfig", str(kubeconfig), "get", "ta"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode != 0
    assert "cannot reach the API server" in r.stderr and "Traceback" not in r.stderr
    r = subprocess.run([CLRK, "dev", "status", "--data-dir", str(tmp_path / "clrk")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "not running" in r.stderr


def test_dev_secrets_default_pool_apply_and_clean_shutdown(tmp_path: Path) -> None:
    env = {"ANTHROPIC_API_KEY": "sk-ant-test", "OTHER_TOKEN": "tok"}
    s = start_dev(tmp_path / "clrk", "--apply", str(ROOT / "examples/echo-bot/manifests"),
                  "--secret", "anthropic-credentials=ANTHROPIC_API_KEY:api-key",
                  "--secret", "other=OTHER_TOKEN", env=env)
    try:
        data = yaml.safe_load(s.kubectl("get", "secret", "anthropic-credentials", "-o",
                                        "yaml").stdout)["data"]
        assert data == {"api-key": "c2stYW50LXRlc3Q="}
        data = yaml.safe_load(s.kubectl("get", "secret", "other", "-o", "yaml").stdout)["data"]
        assert set(data) == {"other-token"}
        assert "default" in s.kubectl("get", "wp").stdout
        assert "echo-bot" in s.kubectl("get", "egw").stdout
        status = subprocess.run([CLRK, "dev", "status", "--data-dir", str(s.data_dir)],
                                capture_output=True, text=True, timeout=60)
        assert status.returncode == 0 and "daemonagents:" in status.stdout
    finally:
        code = s.stop()
    assert code == 0
    log = s.log.read_text()
    assert "Traceback" not in log and "clrk dev stopped" in log


def test_dev_missing_secret_env_is_reported(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "NOPE_NOT_SET"}
    r = subprocess.run([CLRK, "dev", "--data-dir", str(tmp_path), "--secret",
                        "x=NOPE_NOT_SET"], capture_output=True, text=True, timeout=60,
                       env=env)
    assert r.returncode != 0 and "NOPE_NOT_SET" in r.stderr and "Traceback" not in r.stderr


def test_user_pool_wins_over_the_default(tmp_path: Path) -> None:
    s = start_dev(tmp_path / "clrk", "--apply", str(SPEC / "workerpool-default.yaml"))
    try:
        doc = yaml.safe_load(s.kubectl("get", "wp", "default", "-o", "yaml").stdout)
        assert doc["spec"]["replicas"] == 3
    finally:
        s.stop()
    # Restarting keeps the user's pool too.
    s = start_dev(tmp_path / "clrk")
    try:
        doc = yaml.safe_load(s.kubectl("get", "wp", "default", "-o", "yaml").stdout)
        assert doc["spec"]["replicas"] == 3
    finally:
        s.proc.send_signal(signal.SIGTERM)
        assert s.stop() == 0


def test_local_uses_the_dev_kubeconfig(shared_dev_server: DevServer) -> None:
    env = {**os.environ, "CLRK_HOME": str(shared_dev_server.data_dir)}
    r = subprocess.run([CLRK, "--local", "get", "ns"], capture_output=True, text=True,
                       timeout=60, env=env)
    assert r.returncode == 0 and "default" in r.stdout, r.stderr
    r = subprocess.run([CLRK, "--kubeconfig", str(shared_dev_server.kubeconfig), "--context",
                        "nope", "get", "ns"], capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "nope" in r.stderr and "Traceback" not in r.stderr
