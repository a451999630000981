"""The clrk API behind the real kube-apiserver: kubectl, the subresources, the clients,
Kubernetes RBAC deciding who may do what, and the web console behind the same
authentication."""

from __future__ import annotations

import json
import queue
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from kubernetes_asyncio import client as k8s_client
from kubernetes_asyncio import config as k8s_config
from lightkube import Client, KubeConfig

from clrk.api.agents import TaskAgent
from clrk.api.registry import all_kinds
from clrk.client import resource_class
from clrk.controllers.gateway_ca import ca_secret_name
from tests.clrk_on_kube import clrk
from tests.cluster.conftest import ClrkOnKube
from tests.kube_cluster import KubeCluster

pytestmark = pytest.mark.cluster

ROOT = Path(__file__).resolve().parents[2]
GROUP = "clrk.apoxy.dev"
API = f"/apis/{GROUP}/v1alpha1"
EXAMPLES = sorted(p for p in (ROOT / "examples").rglob("*.yaml"))
Result = subprocess.CompletedProcess[str]
CLRK_KINDS = sorted((c for c in all_kinds() if c.kind_info.group == GROUP),
                    key=lambda c: c.kind_info.kind)


def test_kubectl_discovers_every_clrk_kind(clrk_on_kube: ClrkOnKube) -> None:
    out = clrk_on_kube.cluster.kubectl("api-resources", "--api-group", GROUP,
                                       "-o", "name").stdout.split()
    assert sorted(out) == sorted(f"{c.kind_info.plural}.{GROUP}" for c in CLRK_KINDS)
    # The schema reaches kubectl through the aggregated OpenAPI v3, which kube-apiserver
    # fetches from clrk's API server on its own schedule once the APIService is Available:
    # right after the install the group's document may not be merged yet.
    for cls in CLRK_KINDS:
        what = f"{cls.kind_info.plural}.spec" if _has_spec(cls) else cls.kind_info.plural
        deadline = time.monotonic() + 90
        while (explained := clrk_on_kube.cluster.kubectl("explain", what, check=False)
               ).returncode != 0 and "couldn't find resource" in explained.stderr:
            assert time.monotonic() < deadline, explained.stderr
            time.sleep(1)
        assert f"KIND:       {cls.kind_info.kind}" in explained.stdout, explained.stderr


def _has_spec(cls: type) -> bool:
    return "spec" in getattr(cls, "model_fields", {})


@pytest.mark.parametrize("side", ["client", "server"])
def test_every_example_applies_and_reads_back(clrk_on_kube: ClrkOnKube, side: str) -> None:
    cluster = clrk_on_kube.cluster
    server_side = ["--server-side"] if side == "server" else []
    for directory in sorted({p.parent for p in EXAMPLES}):
        # Each example directory names its objects once.
        ns = f"{side}-" + "-".join(directory.relative_to(ROOT / "examples").parts)
        cluster.kubectl("create", "namespace", ns)
        for path in sorted(directory.glob("*.yaml")):
            cluster.kubectl("apply", "-n", ns, "-f", str(path), *server_side)
            back = json.loads(cluster.kubectl("get", "-n", ns, "-f", str(path),
                                              "-o", "json").stdout)
            items = back.get("items", [back])
            assert items and all(i["metadata"]["namespace"] == ns for i in items), path
        # Reapplying changes nothing (client-side apply still sends the lists whose items
        # the server defaulted, e.g. parentRefs[].group, as kubectl does for CRDs, and says
        # "configured": generations and managedFields show nothing was written); describe shows each
        # object; delete removes them all.
        before = _versions(cluster, ns, directory)
        again = cluster.kubectl("apply", "-n", ns, "-f", str(directory), *server_side)
        if server_side:
            assert "serverside-applied" in again.stdout
        assert _versions(cluster, ns, directory) == before
        described = cluster.kubectl("describe", "-n", ns, "-f", str(directory))
        assert "Name:" in described.stdout and "Spec:" in described.stdout
        # A WorkerPool carries the controller's finalizer (it removes the pool's workloads
        # first): delete waits until every object is gone.
        cluster.kubectl("delete", "-n", ns, "-f", str(directory), "--timeout=120s")
        left = cluster.kubectl("get", "-n", ns, "-f", str(directory), "-o", "name",
                               check=False)
        assert left.stdout.strip() == "" and "NotFound" in left.stderr, left


def _versions(cluster: KubeCluster, ns: str, directory: Path) -> dict[str, object]:
    """Each object's generation and its spec writers' managedFields: what an apply that
    changes something moves (status, written by the controllers meanwhile, is left out)."""
    listed = json.loads(cluster.kubectl("get", "-n", ns, "-f", str(directory),
                                        "-o", "json").stdout)
    return {f"{i['kind']}/{i['metadata']['name']}": (
        i["metadata"].get("generation"),
        [m for m in i["metadata"].get("managedFields", []) if m.get("subresource") != "status"])
        for i in listed.get("items", [listed])}


def test_watch_revisions_columns_and_invocations(clrk_on_kube: ClrkOnKube) -> None:
    cluster = clrk_on_kube.cluster
    cluster.kubectl("create", "namespace", "watching")
    cluster.kubectl("apply", "-n", "watching", "-f",
                    str(ROOT / "examples" / "word-count" / "taskagent.yaml"))
    watch = subprocess.Popen(
        ["kubectl", "--kubeconfig", str(clrk_on_kube.admin), "get", "ta", "word-count", "-n",
         "watching", "-w", "--output-watch-events", "-o",
         "custom-columns=EVENT:.type,TIMEOUT:.object.spec.timeout", "--no-headers"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: queue.Queue[str] = queue.Queue()
    assert watch.stdout is not None
    def pump() -> None:
        for line in watch.stdout or ():
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    try:
        first = lines.get(timeout=60)
        assert first.split()[0] == "ADDED", first
        cluster.kubectl("patch", "ta", "word-count", "-n", "watching", "--type=merge",
                        "-p", '{"spec":{"timeout":"42s"}}')
        seen: list[str] = []
        while ["MODIFIED", "42s"] not in [x.split() for x in seen]:
            seen.append(lines.get(timeout=60))  # queue.Empty fails the test with a trace
    finally:
        watch.terminate()
        watch.wait()
    # The controllers (through kube-apiserver, with their ServiceAccount) made a revision.
    rev = _eventually(lambda: cluster.kubectl(
        "get", "asr", "word-count-00001", "-n", "watching", check=False))
    assert "word-count" in rev.stdout
    table = cluster.kubectl("get", "ta", "word-count", "-n", "watching").stdout
    assert table.split("\n")[0].split() == ["NAME", "POOL", "IMAGE", "REVISION", "PINNED",
                                            "PULL", "ACCEPTED", "AGE"]
    assert "word-count-00001" in _eventually(lambda: cluster.kubectl(
        "get", "ta", "word-count", "-n", "watching",
        "-o", "jsonpath={.status.latestCreatedRevisionName}"), lambda r: bool(r.stdout)).stdout
    # Invoke through kube-apiserver's proxy: no worker runs in this cluster, so clrk says
    # so as it does in `clrk dev`, and records the rejected Invocation.
    invoke = cluster.kubectl("create", "--raw", f"{API}/namespaces/watching/taskagents/"
                             "word-count/invoke", "-f", "-", input='{"text": "a b"}',
                             check=False)
    assert "no ready worker" in invoke.stderr, invoke.stderr
    invocations = cluster.kubectl("get", "invocations", "-n", "watching", "-o", "json")
    phases = [i["status"]["phase"] for i in json.loads(invocations.stdout)["items"]]
    assert phases == ["Rejected"]
    for sub in ("logs", "traces"):
        cluster.kubectl("get", "--raw", f"{API}/namespaces/watching/taskagents/"
                        f"word-count/{sub}")
    # The gateway CA controller writes its CA Secret and an Event into kube-apiserver.
    cluster.kubectl("apply", "-n", "watching", "-f",
                    str(ROOT / "examples" / "spec" / "egressgateway-echo-bot.yaml"))
    ca = _eventually(lambda: cluster.kubectl(
        "get", "secret", ca_secret_name("echo-bot"), "-n", "watching",
        "-o", "jsonpath={.data.tls\\.crt}", check=False), lambda r: bool(r.stdout))
    assert ca.returncode == 0 and ca.stdout
    events = _eventually(lambda: cluster.kubectl(
        "get", "events", "-n", "watching", "-o", "jsonpath={.items[*].message}"),
        lambda r: "CA Secret" in r.stdout)
    assert "created CA Secret" in events.stdout
    # A route's token usage (what workers count against TokenBudgets) through the proxy.
    cluster.kubectl("apply", "-n", "watching", "-f",
                    str(ROOT / "examples" / "spec" / "aiproviderroute-anthropic.yaml"))
    usage = f"{API}/namespaces/watching/aiproviderroutes/anthropic/usage"
    added = cluster.kubectl("create", "--raw", usage, "-f", "-",
                            input='{"gateway": "echo-bot", "tokens": 12}')
    assert json.loads(added.stdout)["tokens"] == 12
    read = cluster.kubectl("get", "--raw", f"{usage}?gateway=echo-bot")
    assert json.loads(read.stdout)["tokens"] == 12
    # The clrk CLI with the real cluster's kubeconfig reads the same subresources.
    admin = clrk_on_kube.admin
    clrk("-n", "watching", "agents", "logs", "word-count", kubeconfig=admin)
    clrk("-n", "watching", "agents", "traces", "word-count", kubeconfig=admin)
    listed = clrk("-n", "watching", "agents", "invocations", "word-count", kubeconfig=admin)
    assert "Rejected" in listed.stdout


async def test_lightkube_and_kubernetes_asyncio_through_kube(
        clrk_on_kube: ClrkOnKube) -> None:
    lk = Client(config=KubeConfig.from_file(str(clrk_on_kube.admin)), namespace="default")
    res = resource_class(TaskAgent)
    obj = res.from_dict({"apiVersion": f"{GROUP}/v1alpha1", "kind": "TaskAgent",
                         "metadata": {"name": "from-lightkube", "namespace": "default"},
                         "spec": {"template": {"spec": {"image": "registry.test/a:1"}}}})
    lk.create(obj)
    assert "from-lightkube" in [o.metadata.name for o in lk.list(res, namespace="default")]
    await k8s_config.load_kube_config(str(clrk_on_kube.admin))
    async with k8s_client.ApiClient() as api:
        custom = k8s_client.CustomObjectsApi(api)
        got = await custom.get_namespaced_custom_object(GROUP, "v1alpha1", "default",
                                                        "taskagents", "from-lightkube")
        assert got["spec"]["template"]["spec"]["image"] == "registry.test/a:1"
        await custom.delete_namespaced_custom_object(GROUP, "v1alpha1", "default",
                                                     "taskagents", "from-lightkube")


def _namespace_with_word_count(cluster: KubeCluster, ns: str) -> str:
    """Creates namespace ``ns`` holding the word-count example's TaskAgent."""
    cluster.kubectl("create", "namespace", ns)
    cluster.kubectl("apply", "-n", ns, "-f",
                    str(ROOT / "examples" / "word-count" / "taskagent.yaml"))
    return ns


def test_rbac_decides_reads_writes_and_invokes(clrk_on_kube: ClrkOnKube) -> None:
    cluster = clrk_on_kube.cluster
    ns = _namespace_with_word_count(cluster, "rbac")
    cluster.kubectl("create", "serviceaccount", "reader", "-n", ns)
    cluster.kubectl("create", "role", "taskagent-reader", "-n", ns, "--verb=get",
                    "--resource=taskagents.clrk.apoxy.dev")
    cluster.kubectl("create", "rolebinding", "reader", "-n", ns, "--role=taskagent-reader",
                    f"--serviceaccount={ns}:reader")
    token = cluster.kubectl("create", "token", "reader", "-n", ns).stdout.strip()
    reader = cluster.kubeconfig(token, "reader")
    # Through kube-apiserver (front-proxy headers) ...
    got = cluster.kubectl("get", "ta", "word-count", "-n", ns, "-o", "name",
                          kubeconfig=reader)
    assert got.stdout.strip() == "taskagent.clrk.apoxy.dev/word-count"
    other = json.dumps({"apiVersion": f"{GROUP}/v1alpha1", "kind": "TaskAgent",
                        "metadata": {"name": "another"},
                        "spec": {"template": {"spec": {"image": "registry.test/a:1"}}}})
    denied = cluster.kubectl("create", "-n", ns, "-f", "-", input=other, kubeconfig=reader,
                             check=False)
    assert denied.returncode != 0 and "forbidden" in denied.stderr.lower(), denied.stderr
    assert 'cannot create resource "taskagents"' in denied.stderr
    invoke_path = f"{API}/namespaces/{ns}/taskagents/word-count/invoke"
    denied = cluster.kubectl("create", "--raw", invoke_path, "-f", "-", input="{}",
                             kubeconfig=reader, check=False)
    assert 'cannot create resource "taskagents/invoke"' in denied.stderr, denied.stderr
    # ... and straight to clrk with the ServiceAccount's token (TokenReview).
    direct = clrk_on_kube.direct(token, "GET", f"{API}/namespaces/{ns}/taskagents/word-count")
    assert direct.status_code == 200
    direct = clrk_on_kube.direct(token, "POST", f"{API}/namespaces/{ns}/taskagents/"
                                 "word-count/invoke", b"{}")
    assert direct.status_code == 403, direct.text
    assert clrk_on_kube.direct("not-a-token", "GET", f"{API}/namespaces/{ns}/taskagents"
                               ).status_code == 401
    # Front-proxy headers count only with kube-apiserver's front-proxy certificate.
    spoofed = clrk_on_kube.direct(token, "POST", f"{API}/namespaces/{ns}/taskagents/"
                                  "word-count/invoke", b"{}",
                                  {"X-Remote-User": "test-admin",
                                   "X-Remote-Group": "system:masters"})
    assert spoofed.status_code == 403, spoofed.text
    # Grant the verbs: after the cached denials expire, both go through.
    cluster.kubectl("create", "role", "taskagent-runner", "-n", ns, "--verb=create",
                    "--resource=taskagents.clrk.apoxy.dev",
                    "--resource=taskagents.clrk.apoxy.dev/invoke")
    cluster.kubectl("create", "rolebinding", "runner", "-n", ns, "--role=taskagent-runner",
                    f"--serviceaccount={ns}:reader")
    invoked = _eventually(lambda: cluster.kubectl(
        "create", "--raw", invoke_path, "-f", "-", input="{}", kubeconfig=reader,
        check=False), lambda r: "forbidden" not in r.stderr.lower(), timeout=40)
    assert "no ready worker" in invoked.stderr  # allowed: clrk itself answers now
    created = _eventually(lambda: cluster.kubectl(
        "create", "-n", ns, "-f", "-", input=other, kubeconfig=reader, check=False),
        lambda r: r.returncode == 0, timeout=40)
    assert "created" in created.stdout


def _eventually(probe: Callable[[], Result], ok: Callable[[Result], bool] | None = None,
                timeout: float = 30) -> Result:
    """``probe()`` until ``ok`` says yes (or it exits 0), or the time is up."""
    check = ok or (lambda r: r.returncode == 0)
    deadline = time.monotonic() + timeout
    while True:
        r = probe()
        if check(r) or time.monotonic() > deadline:
            return r
        time.sleep(0.5)


def test_cron_fires_through_kube_apiserver(clrk_on_kube: ClrkOnKube) -> None:
    """The cron controller invokes with the controller manager's ServiceAccount, through
    kube-apiserver's proxy (RBAC: create on taskagents/invoke): with no worker in this
    cluster, each fire is recorded as a Rejected Invocation with trigger cron."""
    cluster = clrk_on_kube.cluster
    cluster.kubectl("create", "namespace", "cron")
    cluster.kubectl("apply", "-n", "cron", "-f", "-", input=json.dumps({
        "apiVersion": f"{GROUP}/v1alpha1", "kind": "TaskAgent",
        "metadata": {"name": "ticker"},
        "spec": {"schedule": "@every 1s",
                 "template": {"spec": {"image": "registry.test/a:1"}}}}))
    fired = _eventually(lambda: cluster.kubectl(
        "get", "invocations", "-n", "cron", "-o", "jsonpath={.items[*].spec.trigger}"),
        lambda r: "cron" in r.stdout, timeout=60)
    assert "cron" in fired.stdout.split()
    cluster.kubectl("delete", "ta", "ticker", "-n", "cron")


def test_the_console_logs_in_with_a_kubernetes_token(clrk_on_kube: ClrkOnKube) -> None:
    """On a cluster the console checks a token with kube-apiserver (TokenReview) and
    asks it whether the user may list every namespace's invocations
    (SubjectAccessReview): a ServiceAccount without that is refused, one bound to
    clrk:view logs in, by form or one-time link, and reads the cluster's agents, until
    the binding is taken away."""
    cluster = clrk_on_kube.cluster
    ns = _namespace_with_word_count(cluster, "console")
    cluster.kubectl("create", "serviceaccount", "watcher", "-n", ns)
    token = cluster.kubectl("create", "token", "watcher", "-n", ns).stdout.strip()
    with clrk_on_kube.client() as c:
        assert c.get("/console/api/agents").status_code == 401
        r = c.post("/console/login", data={"token": "not-a-token"})
        assert r.status_code == 401 and "not valid" in r.text
        r = c.post("/console/login", data={"token": token})
        assert r.status_code == 401, r.text
        assert f"system:serviceaccount:{ns}:watcher" in r.text
        assert "may not list invocations" in r.text and "set-cookie" not in r.headers
        cluster.kubectl("create", "clusterrolebinding", "console-watcher",
                        "--clusterrole=clrk:view", f"--serviceaccount={ns}:watcher")
        deadline = time.monotonic() + 40  # past the cached denial
        while (r := c.post("/console/login", data={"token": token})).status_code != 303:
            assert r.status_code == 401 and time.monotonic() < deadline, r.text
            time.sleep(0.5)
        assert r.headers["location"] == "/console/"
        session = c.get("/console/session").json()
        assert session["user"] == f"system:serviceaccount:{ns}:watcher"
        agents = c.get("/console/api/agents").json()["items"]
        assert {(a["namespace"], a["kind"], a["name"]) for a in agents} >= {
            (ns, "TaskAgent", "word-count")}
        page = c.get(f"/console/api/agents/{ns}/TaskAgent/word-count")
        assert page.status_code == 200 and "word-count" in page.json()["yaml"]
        assert c.get("/console/api/workers").status_code == 200
        assert c.post("/console/logout").status_code == 303
        assert c.get("/console/api/agents").status_code == 401
        link = c.post("/console/login-links", headers={"Authorization": f"Bearer {token}"})
        assert link.status_code == 200, link.text
        assert c.get(link.json()["path"]).status_code == 303
        assert c.get("/console/api/overview").status_code == 200
        # Taking the binding away ends the session too, once the allowed answer the API
        # server cached has expired: the right is asked again on every request.
        cluster.kubectl("delete", "clusterrolebinding", "console-watcher")
        deadline = time.monotonic() + 40
        while (r := c.get("/console/api/overview")).status_code == 200:
            assert time.monotonic() < deadline, "the session outlived its binding"
            time.sleep(0.5)
        assert r.status_code == 401 and "may not list invocations" in r.text, r.text
        assert c.get("/console/session").status_code == 401
