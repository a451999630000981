"""Real kubectl against `clrk dev`, using only the kubeconfig it wrote (no insecure flags)."""

from __future__ import annotations

import json
import queue
import subprocess
import threading
from pathlib import Path

import pytest
import yaml

from clrk.api import all_kinds
from tests.conftest import KUBECTL, ROOT, DevServer

pytestmark = pytest.mark.e2e

EXAMPLES = sorted(
    p for p in (ROOT / "examples").rglob("*.y*ml")
    if any(d and str(d.get("apiVersion", "")).startswith(("clrk.apoxy.dev/", "v1"))
           for d in yaml.safe_load_all(p.read_text()))
)

TASKAGENT = """\
apiVersion: clrk.apoxy.dev/v1alpha1
kind: TaskAgent
metadata:
  name: {name}
spec:
  workerPoolRef: default
  timeout: 60s
  template:
    spec:
      image: registry.example.com/word-count:0.1
"""


def test_examples_exist() -> None:
    assert len(EXAMPLES) >= 10, EXAMPLES


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: str(p.relative_to(ROOT)))
def test_apply_every_example_client_and_server_side(shared_dev_server: DevServer,
                                                    path: Path) -> None:
    r = shared_dev_server.kubectl("apply", "-f", str(path))
    assert "created" in r.stdout or "configured" in r.stdout or "unchanged" in r.stdout
    r = shared_dev_server.kubectl("apply", "--server-side", "-f", str(path))
    assert "serverside-applied" in r.stdout
    # Applying the same file again is a no-op, not an error.
    shared_dev_server.kubectl("apply", "-f", str(path))


def test_get_by_every_name_with_columns(shared_dev_server: DevServer) -> None:
    shared_dev_server.kubectl("apply", "-f", "-", input=TASKAGENT.format(name="names"))
    for name in ("taskagents.clrk.apoxy.dev", "taskagents", "taskagent", "ta", "TaskAgent"):
        out = shared_dev_server.kubectl("get", name, "names").stdout
        header = out.splitlines()[0]
        assert "NAME" in header and "POOL" in header and "IMAGE" in header, out
        assert "registry.example.com/word-count:0.1" in out
    wide = shared_dev_server.kubectl("get", "ta", "names", "-o", "wide").stdout
    assert len(wide.splitlines()[0].split()) >= len(out.splitlines()[0].split())
    for cls in all_kinds():
        for short in cls.kind_info.short_names:
            r = shared_dev_server.kubectl("get", short)
            assert r.returncode == 0


def _settled(server: DevServer, name: str) -> None:
    """Wait until the controllers have written the agent's status (so it stops changing)."""
    for _ in range(300):
        if server.kubectl("get", "ta", name, "-o",
                          "jsonpath={.status.latestCreatedRevisionName}").stdout:
            return
        threading.Event().wait(0.1)
    raise AssertionError(f"{name} never got a status")


def test_get_yaml_round_trip(shared_dev_server: DevServer) -> None:
    shared_dev_server.kubectl("apply", "-f", "-", input=TASKAGENT.format(name="roundtrip"))
    _settled(shared_dev_server, "roundtrip")
    first = shared_dev_server.kubectl("get", "ta", "roundtrip", "-o", "yaml").stdout
    shared_dev_server.kubectl("replace", "-f", "-", input=first)
    second = yaml.safe_load(shared_dev_server.kubectl("get", "ta", "roundtrip", "-o",
                                                      "yaml").stdout)
    before = yaml.safe_load(first)
    assert second["spec"] == before["spec"]
    assert second["metadata"]["generation"] == before["metadata"]["generation"]
    assert second["metadata"]["uid"] == before["metadata"]["uid"]


def _reader(proc: subprocess.Popen[str], out: queue.Queue[str]) -> None:
    assert proc.stdout is not None
    for line in proc.stdout:
        out.put(line)


def test_get_watch_sees_update(shared_dev_server: DevServer) -> None:
    shared_dev_server.kubectl("apply", "-f", "-", input=TASKAGENT.format(name="watched"))
    proc = subprocess.Popen(
        [KUBECTL, "--kubeconfig", str(shared_dev_server.kubeconfig), "get", "ta", "watched",
         "-w", "--output-watch-events", "-o", "json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=_reader, args=(proc, lines), daemon=True).start()
    try:
        buf = ""
        decoder = json.JSONDecoder()
        events: list[dict[str, object]] = []

        def drain_until(pred: object) -> None:
            nonlocal buf
            while True:
                buf += lines.get(timeout=30)
                while buf.strip():
                    try:
                        obj, end = decoder.raw_decode(buf.lstrip())
                    except json.JSONDecodeError:
                        break
                    buf = buf.lstrip()[end:]
                    events.append(obj)
                    if pred(obj):  # type: ignore[operator]
                        return

        drain_until(lambda e: e["type"] == "ADDED")
        shared_dev_server.kubectl("patch", "ta", "watched", "--type=merge",
                                  "-p", '{"spec":{"timeout":"42s"}}')
        drain_until(lambda e: e["type"] == "MODIFIED"
                    and e["object"]["spec"]["timeout"] == "42s")
    finally:
        proc.kill()
        proc.wait()


def test_describe(shared_dev_server: DevServer) -> None:
    shared_dev_server.kubectl("apply", "-f", "-", input=TASKAGENT.format(name="described"))
    out = shared_dev_server.kubectl("describe", "ta", "described").stdout
    assert "Name:" in out and "described" in out
    assert "registry.example.com/word-count:0.1" in out
    assert "Events:" in out


def test_delete_waits_out_finalizers(shared_dev_server: DevServer) -> None:
    manifest = yaml.safe_load(TASKAGENT.format(name="finalized"))
    manifest["metadata"]["finalizers"] = ["example.com/hold"]
    shared_dev_server.kubectl("apply", "-f", "-", input=yaml.safe_dump(manifest))
    proc = subprocess.Popen(
        [KUBECTL, "--kubeconfig", str(shared_dev_server.kubeconfig), "delete", "ta",
         "finalized", "--timeout=60s"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        for _ in range(100):
            ts = shared_dev_server.kubectl(
                "get", "ta", "finalized", "-o", "jsonpath={.metadata.deletionTimestamp}"
            ).stdout
            if ts:
                break
            threading.Event().wait(0.1)
        assert ts, "deletionTimestamp never set"
        assert proc.poll() is None, "kubectl delete returned before the finalizer was removed"
        shared_dev_server.kubectl("patch", "ta", "finalized", "--type=json",
                                  "-p", '[{"op":"remove","path":"/metadata/finalizers"}]')
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        assert "deleted" in out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    r = shared_dev_server.kubectl("get", "ta", "finalized", check=False)
    assert r.returncode != 0 and "NotFound" in r.stderr


def test_patch_merge_and_json(shared_dev_server: DevServer) -> None:
    shared_dev_server.kubectl("apply", "-f", "-", input=TASKAGENT.format(name="patched"))
    shared_dev_server.kubectl("patch", "ta", "patched", "--type=merge",
                              "-p", '{"spec":{"timeout":"30s"}}')
    get = ["get", "ta", "patched", "-o", "jsonpath={.spec.timeout}"]
    assert shared_dev_server.kubectl(*get).stdout == "30s"
    shared_dev_server.kubectl(
        "patch", "ta", "patched", "--type=json",
        "-p", '[{"op":"test","path":"/spec/timeout","value":"30s"},'
              '{"op":"replace","path":"/spec/timeout","value":"45s"}]')
    assert shared_dev_server.kubectl(*get).stdout == "45s"
    r = shared_dev_server.kubectl(
        "patch", "ta", "patched", "--type=json",
        "-p", '[{"op":"test","path":"/spec/timeout","value":"1s"},'
              '{"op":"replace","path":"/spec/timeout","value":"2s"}]', check=False)
    assert r.returncode != 0
    assert shared_dev_server.kubectl(*get).stdout == "45s"
    r = shared_dev_server.kubectl("patch", "ta", "patched", "--type=merge",
                                  "-p", '{"spec":{"timeout":"-3s"}}', check=False)
    assert r.returncode != 0 and "spec.timeout" in r.stderr


INVALID = {
    "bad-enum": (
        """apiVersion: clrk.apoxy.dev/v1alpha1
kind: DaemonAgent
metadata: {name: bad-enum}
spec:
  restartPolicy: Sometimes
  template: {spec: {image: busybox:1.36}}
""",
        "spec.restartPolicy",
    ),
    "negative-timeout": (TASKAGENT.format(name="neg").replace("60s", "-5s"), "spec.timeout"),
    "zero-timeout": (TASKAGENT.format(name="zero").replace("60s", "0s"), "spec.timeout"),
    "missing-image": (
        """apiVersion: clrk.apoxy.dev/v1alpha1
kind: TaskAgent
metadata: {name: no-image}
spec:
  template: {spec: {command: [sh]}}
""",
        "spec.template.spec.image",
    ),
    "unknown-field": (
        TASKAGENT.format(name="unknown").replace("  timeout: 60s", "  timeout: 60s\n  flavour: x"),
        "spec.flavour",
    ),
    "value-from": (
        TASKAGENT.format(name="vf") + """      env:
      - name: KEY
        valueFrom: {secretKeyRef: {name: s, key: k}}
""",
        "valueFrom",
    ),
}


@pytest.mark.parametrize("case", sorted(INVALID))
@pytest.mark.parametrize("mode", ["client-side", "server-side", "create"])
def test_invalid_manifest_names_the_field(shared_dev_server: DevServer, case: str,
                                          mode: str) -> None:
    manifest, field = INVALID[case]
    args = {"client-side": ["apply", "-f", "-"],
            "server-side": ["apply", "--server-side", "-f", "-"],
            "create": ["create", "-f", "-"]}[mode]
    r = shared_dev_server.kubectl(*args, input=manifest, check=False)
    assert r.returncode != 0, r.stdout
    assert field in r.stderr, r.stderr
    assert "Traceback" not in r.stderr


@pytest.mark.parametrize("mode", ["client-side", "server-side", "create"])
def test_an_unknown_kind_is_named(shared_dev_server: DevServer, mode: str) -> None:
    """kubectl asks for OpenAPI v2 (protobuf) when v3 lacks the kind: it must find an
    answer it can read, and then say the kind is unknown."""
    manifest = "apiVersion: clrk.apoxy.dev/v1alpha1\nkind: TaskAgnet\nmetadata:\n  name: x\n"
    args = {"client-side": ["apply", "-f", "-"],
            "server-side": ["apply", "--server-side", "-f", "-"],
            "create": ["create", "-f", "-"]}[mode]
    r = shared_dev_server.kubectl(*args, input=manifest, check=False)
    assert r.returncode != 0, r.stdout
    assert 'no matches for kind "TaskAgnet"' in r.stderr, r.stderr
    assert "openapi" not in r.stderr
