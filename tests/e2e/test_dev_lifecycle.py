"""`clrk dev` as a user runs it: revisions from the controllers, restarts, authentication."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import ROOT, DevServer, start_dev

pytestmark = pytest.mark.e2e

WORD_COUNT = ROOT / "examples" / "word-count" / "taskagent.yaml"


def _wait_for(fn: object, timeout: float = 30.0) -> object:
    deadline = time.monotonic() + timeout
    while True:
        value = fn()  # type: ignore[operator]
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.2)


def _revisions(server: DevServer) -> list[str]:
    out = server.kubectl("get", "asr", "-l", "clrk.apoxy.dev/agent=word-count",
                         "-o", "jsonpath={.items[*].metadata.name}").stdout
    return sorted(out.split())


def test_revisions_follow_template_changes(dev_server: DevServer) -> None:
    dev_server.kubectl("apply", "-f", str(WORD_COUNT))
    assert _wait_for(lambda: _revisions(dev_server) == ["word-count-00001"]), \
        _revisions(dev_server)
    # template change: generation 2 -> revision 00002.
    dev_server.kubectl("patch", "ta", "word-count", "--type=merge",
                       "-p", '{"spec":{"template":{"spec":{"args":["--verbose"]}}}}')
    both = ["word-count-00001", "word-count-00002"]
    assert _wait_for(lambda: _revisions(dev_server) == both), _revisions(dev_server)
    # timeout only: generation 3, no new revision.
    dev_server.kubectl("patch", "ta", "word-count", "--type=merge",
                       "-p", '{"spec":{"timeout":"30s"}}')
    assert _wait_for(lambda: dev_server.kubectl(
        "get", "ta", "word-count", "-o", "jsonpath={.status.observedGeneration}"
    ).stdout == "3")
    assert _revisions(dev_server) == both
    latest = dev_server.kubectl("get", "ta", "word-count", "-o",
                                "jsonpath={.status.latestCreatedRevisionName}").stdout
    assert latest == "word-count-00002"


def test_restart_keeps_objects_and_watch_resumes(tmp_path: Path) -> None:
    data = tmp_path / "clrk"
    server = start_dev(data)
    try:
        server.kubectl("apply", "-f", str(WORD_COUNT))
        # Let the controllers settle (revision and status written) before the snapshot.
        assert _wait_for(lambda: server.kubectl(
            "get", "ta", "word-count", "-o", "jsonpath={.status.latestCreatedRevisionName}"
        ).stdout == "word-count-00001")
        before = json.loads(server.kubectl("get", "ta", "word-count", "-o", "json").stdout)
        rv = before["metadata"]["resourceVersion"]
    finally:
        assert server.stop() == 0
    server = start_dev(data)
    try:
        after = json.loads(server.kubectl("get", "ta", "word-count", "-o", "json").stdout)
        assert after["metadata"]["uid"] == before["metadata"]["uid"]
        assert after["metadata"]["creationTimestamp"] == before["metadata"]["creationTimestamp"]
        assert after["spec"] == before["spec"]
        assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
        server.kubectl("patch", "ta", "word-count", "--type=merge",
                       "-p", '{"spec":{"timeout":"7s"}}')
        # A watch from the pre-restart resourceVersion replays what happened since.
        url = (f"{server.url}/apis/clrk.apoxy.dev/v1alpha1/namespaces/default/taskagents"
               f"?watch=true&resourceVersion={rv}&timeoutSeconds=5")
        headers = {"Authorization": f"Bearer {server.token}"}
        seen = []
        with httpx.stream("GET", url, headers=headers, verify=server.ssl_context(),
                          timeout=30) as r:
            assert r.status_code == 200
            for line in r.iter_lines():
                event = json.loads(line)
                seen.append(event)
                obj = event["object"]
                if obj.get("spec", {}).get("timeout") == "7s":
                    break
        assert seen and seen[-1]["type"] == "MODIFIED"
        assert all(int(e["object"]["metadata"]["resourceVersion"]) > int(rv) for e in seen)
    finally:
        assert server.stop() == 0


def test_authentication_required(shared_dev_server: DevServer) -> None:
    url = f"{shared_dev_server.url}/apis/clrk.apoxy.dev/v1alpha1/taskagents"
    verify = shared_dev_server.ssl_context()
    assert httpx.get(url, verify=verify).status_code == 401
    bad = httpx.get(url, verify=verify, headers={"Authorization": "Bearer wrong"})
    assert bad.status_code == 401
    assert bad.json()["reason"] == "Unauthorized"
    good = httpx.get(url, verify=verify,
                     headers={"Authorization": f"Bearer {shared_dev_server.token}"})
    assert good.status_code == 200
    # The kubeconfig is private: it carries the token.
    assert shared_dev_server.kubeconfig.stat().st_mode & 0o077 == 0
