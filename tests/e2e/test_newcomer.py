"""A newcomer's first agent: `clrk dev` with its registry, the word-count example built
from its Dockerfile by `clrk image build` (no Docker), pushed to the dev registry,
applied and invoked through the ingress; then changed, rebuilt, re-applied, and the next
call runs the new code. The base image comes from `clrk image import`, as it would on a
machine without internet."""

from __future__ import annotations

import json
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from tests.conftest import ROOT, DevServer, remove_image_store, start_dev
from tests.images import oci_layout, python_slim_stand_in

pytestmark = pytest.mark.e2e
EXAMPLE = ROOT / "examples" / "word-count"


@pytest.fixture(scope="module")
def dev(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevServer]:
    server = start_dev(tmp_path_factory.mktemp("newcomer") / "clrk", workers=1)
    try:
        server.wait_for_worker()
        yield server
    finally:
        server.stop()
        remove_image_store(server.data_dir)


def count(dev: DevServer, text: str) -> dict[str, object]:
    r = httpx.post(f"{dev.ingress}/", json={"text": text}, timeout=180,
                   headers={"X-Clrk-TaskAgent": "default/word-count"})
    assert r.status_code == 200, r.text
    return dict(json.loads(r.text))


def test_build_push_invoke_then_change(dev: DevServer, tmp_path: Path) -> None:
    reg = dev.registry
    status = dev.clrk("dev", "status", "--data-dir", str(dev.data_dir)).stdout
    assert re.search(rf"^  registry: +{re.escape(reg)}$", status, re.M), status
    # Without its base the build says what to do (and sends nothing anywhere: --pull never).
    failed = dev.image("build", "-t", "word-count:0.1", "--pull", "never", str(EXAMPLE),
                   check=False)
    assert failed.returncode == 1 and "Traceback" not in failed.stderr
    assert "clrk image import" in failed.stderr, failed.stderr
    layout = oci_layout(python_slim_stand_in(), tmp_path / "python-slim", "3.12-slim")
    assert "imported python:3.12-slim" in dev.image("import", str(layout), "--name",
                                                "python:3.12-slim").stdout
    built = dev.image("build", "-t", "word-count:0.1", "--push", str(EXAMPLE))
    assert "COPY agent.py /agent.py" in built.stderr  # buildah's progress
    assert f"pushed {reg}/word-count:0.1" in built.stdout
    listed = dev.image("ls").stdout
    assert "localhost/word-count:0.1" in listed and "python:3.12-slim" in listed

    manifest = yaml.safe_load((EXAMPLE / "taskagent.yaml").read_text())
    assert manifest["spec"]["template"]["spec"]["image"].endswith("/word-count:0.1")
    manifest["spec"]["template"]["spec"]["image"] = f"{reg}/word-count:0.1"
    dev.kubectl("apply", "-f", "-", input=yaml.safe_dump(manifest))
    assert count(dev, "hello world from clrk")["word_count"] == 4

    # The newcomer changes the agent, builds a new tag, re-applies: a new revision, and
    # the next call runs the new code. The unchanged steps come from the layer cache.
    changed = tmp_path / "word-count"
    shutil.copytree(EXAMPLE, changed)
    agent = changed / "agent.py"
    agent.write_text(agent.read_text().replace('"word_count": len(text.split()),',
                                               '"word_count": len(text.split()), "v": 2,'))
    rebuilt = dev.image("build", "-t", "word-count:0.2", str(changed))
    assert "Using cache" not in rebuilt.stderr.split("COPY agent.py")[1]  # the file changed
    assert f"pushed {reg}/word-count:0.2" in dev.image("push", "word-count:0.2").stdout
    manifest["spec"]["template"]["spec"]["image"] = f"{reg}/word-count:0.2"
    dev.kubectl("apply", "-f", "-", input=yaml.safe_dump(manifest))
    dev.kubectl("wait", "taskagent/word-count", "--timeout=120s",
                "--for=jsonpath={.status.latestReadyRevisionName}=word-count-00002")
    answer = count(dev, "one two three")
    assert answer["word_count"] == 3 and answer["v"] == 2, answer
    revisions = dev.kubectl("get", "agentsandboxrevisions", "-o", "name").stdout.split()
    assert {"agentsandboxrevision.clrk.apoxy.dev/word-count-00001",
            "agentsandboxrevision.clrk.apoxy.dev/word-count-00002"} <= set(revisions)

    # Rollback is a revision pin: -00001 runs while pinned (kubectl and clrk show it),
    # and the latest again once unpinned.
    dev.kubectl("patch", "taskagent", "word-count", "--type", "merge", "-p",
                '{"spec": {"pinnedRevisionName": "word-count-00001"}}')
    assert "v" not in count(dev, "one two three")
    dev.kubectl("wait", "taskagent/word-count", "--timeout=60s",
                "--for=jsonpath={.status.servingRevisionName}=word-count-00001")
    row = dev.kubectl("get", "taskagent", "word-count", "--no-headers").stdout.split()
    assert row[3:5] == ["word-count-00001", "word-count-00001"], row  # REVISION, PINNED
    shown = dev.clrk("agents", "get", "word-count").stdout
    assert "word-count-00001 (pinned; the latest is word-count-00002)" in shown, shown
    dev.kubectl("patch", "taskagent", "word-count", "--type", "json", "-p",
                '[{"op": "remove", "path": "/spec/pinnedRevisionName"}]')
    assert count(dev, "one two three")["v"] == 2
    # A pin to a revision that is not the agent's is refused at invocation, saying why.
    dev.kubectl("patch", "taskagent", "word-count", "--type", "merge", "-p",
                '{"spec": {"pinnedRevisionName": "word-count-00009"}}')
    r = httpx.post(f"{dev.ingress}/", json={"text": "x"}, timeout=60,
                   headers={"X-Clrk-TaskAgent": "default/word-count"})
    assert r.status_code == 503 and "word-count-00009" in r.text, r.text


def test_an_image_that_cannot_be_pulled_says_so(dev: DevServer) -> None:
    """Not only `kubectl describe`: the PULL column and `clrk agents list/get` say why an
    agent never runs."""
    dev.kubectl("apply", "-f", "-", input=yaml.safe_dump({
        "apiVersion": "clrk.apoxy.dev/v1alpha1", "kind": "TaskAgent",
        "metadata": {"name": "unpullable"},
        "spec": {"template": {"spec": {"image": "127.0.0.1:1/nowhere:0.1"}}}}))
    deadline = time.monotonic() + 120
    while dev.kubectl("get", "taskagent", "unpullable", "-o", 'jsonpath={.status.conditions['
                      '?(@.type=="ImageReady")].reason}').stdout != "ImagePullFailed":
        assert time.monotonic() < deadline, "the failed pull never showed on the agent"
        time.sleep(0.5)
    header, row = dev.kubectl("get", "taskagent", "unpullable").stdout.splitlines()[:2]
    assert dict(zip(header.split(), row.split(), strict=False))["PULL"] == "ImagePullFailed"
    listed = dev.clrk("agents", "list").stdout
    assert any("unpullable" in line and "ImagePullFailed" in line
               for line in listed.splitlines()), listed
    shown = dev.clrk("agents", "get", "unpullable").stdout
    assert "127.0.0.1:1/nowhere:0.1 cannot be pulled" in shown and "unreachable" in shown, shown
