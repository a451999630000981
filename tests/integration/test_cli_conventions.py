"""`clrk` follows kubectl's conventions: top-level logs/traces/run-task/status, context
management, --version, -o json|yaml|jsonpath without managedFields, get -w, several
kinds at once, delete --all, agents get explaining an agent, help that fits 80 columns
without colour, and one-line errors. Against a real `clrk dev` (no workers)."""

from __future__ import annotations

import json
import os
import pty
import queue
import re
import signal
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import yaml

from clrk.cli import agent_logs, agents, main, run_task
from clrk.cli.help_style import walk
from tests.conftest import CLRK, KUBECTL, DevServer

API_VERSION = "clrk.apoxy.dev/v1alpha1"
# Options of `clrk dev` (src/clrk/cli/dev.py, another engineer's file) that have no help
# text yet; every other option must have one.
DEV_WITHOUT_HELP = {("dev", "--host"), ("dev", "--recursive"),
                    ("dev", "--controller-concurrency"), ("dev status", "--data-dir")}


def task_agent(name: str, pool: str = "default", namespace: str | None = None) -> str:
    md: dict[str, Any] = {"name": name, **({"namespace": namespace} if namespace else {})}
    return yaml.safe_dump({"apiVersion": API_VERSION, "kind": "TaskAgent", "metadata": md,
                           "spec": {"workerPoolRef": pool,
                                    "template": {"spec": {"image": f"example.com/{name}:1"}}}})


def daemon_agent(name: str, namespace: str | None = None) -> str:
    md: dict[str, Any] = {"name": name, **({"namespace": namespace} if namespace else {})}
    return yaml.safe_dump({"apiVersion": API_VERSION, "kind": "DaemonAgent", "metadata": md,
                           "spec": {"template": {"spec": {"image": f"example.com/{name}:1",
                                                          "command": ["sleep", "1d"]}}}})


def eventually(check: Any, what: str, timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        assert time.monotonic() < deadline, what
        time.sleep(0.2)


def one_line_error(r: subprocess.CompletedProcess[str], needle: str) -> None:
    assert r.returncode != 0, r.stdout
    assert needle in r.stderr, r.stderr
    assert "Traceback" not in r.stderr + r.stdout
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr


def run(*args: str, env: dict[str, str] | None = None,
        input: str | None = None) -> subprocess.CompletedProcess[str]:
    """The console script without the fixture's --kubeconfig."""
    return subprocess.run([CLRK, *args], capture_output=True, text=True, timeout=60,
                          input=input, env={**os.environ, **(env or {})}, check=False)


# --- 1. top-level logs / traces / run-task, and status ----------------------------------


def test_top_level_agent_commands_are_the_agents_ones(shared_dev_server: DevServer) -> None:
    def callback(app: Any, name: str) -> Any:
        return next(c.callback for c in app.registered_commands if c.name == name)

    for name, fn in (("logs", agent_logs.logs), ("traces", agent_logs.traces),
                     ("run-task", run_task.run_task)):
        assert callback(main.app, name) is fn and callback(agents.app, name) is fn
    s = shared_dev_server
    s.clrk("apply", "-f", "-", input=task_agent("conv-top"))
    top = s.clrk("run-task", "conv-top", "--timeout", "10", check=False)
    nested = s.clrk("agents", "run-task", "conv-top", "--timeout", "10", check=False)
    assert top.returncode == nested.returncode == 77  # no worker: rejected, said at once
    assert top.stderr == nested.stderr and "no ready worker" in top.stderr
    assert s.clrk("logs", "conv-top").stdout == s.clrk("agents", "logs", "conv-top").stdout
    traces = json.loads(s.clrk("traces", "conv-top", "-o", "json").stdout)
    assert traces == json.loads(s.clrk("agents", "traces", "conv-top", "-o", "json").stdout)
    assert {t["attributes"]["clrk.invocation.phase"] for t in traces} == {"Rejected"}


def test_status(shared_dev_server: DevServer, tmp_path: Path) -> None:
    s = shared_dev_server
    s.clrk("apply", "-f", "-", input=task_agent("conv-status"))
    eventually(lambda: "conv-status-00001" in s.clrk("status").stdout, "no revision shown")
    out = s.clrk("status").stdout
    assert f"API server:  {s.url} (v1.32.0-clrk." in out and "reachable" in out
    pools = out.split("Worker pools")[1].split("Agents")[0]
    assert re.search(r"default\s+default\s+0/\d+\s+False\s+NoWorkers", pools), out
    agent_line = next(line for line in out.splitlines() if "conv-status" in line)
    assert agent_line.split()[:5] == ["default", "TaskAgent", "conv-status", "Pending",
                                      "conv-status-00001"], agent_line
    assert "Egress gateways" in out
    doc = yaml.safe_load(s.clrk("status", "-o", "yaml").stdout)
    assert doc["server"] == s.url and doc["version"].startswith("v1.32.0-clrk.")
    pool = next(p for p in doc["workerPools"] if p["name"] == "default")
    assert pool["ready"]["status"] == "False" and pool["readyReplicas"] == 0
    agent = next(a for a in json.loads(s.clrk("status", "-o", "json").stdout)["agents"]
                 if a["name"] == "conv-status")
    assert agent["kind"] == "TaskAgent" and agent["revision"] == "conv-status-00001"
    assert agent["phase"] == "Pending" and agent["reason"] == "WorkerPoolNotReady"
    # An API server out of reach: one line, exit 1.
    down = tmp_path / "down.yaml"
    down.write_text(re.sub(r"https://127\.0\.0\.1:\d+", "https://127.0.0.1:1",
                           s.kubeconfig.read_text()))
    r = run("--kubeconfig", str(down), "status")
    one_line_error(r, "the API server at https://127.0.0.1:1 cannot be reached")
    assert r.returncode == 1


# --- 2. contexts ----------------------------------------------------------------------


def two_contexts(s: DevServer, path: Path) -> str:
    """The dev kubeconfig with a comment and a second context, written to ``path``."""
    text = "# kept as written\n" + s.kubeconfig.read_text().replace(
        "contexts:\n", "contexts:\n- name: team\n  context: {cluster: clrk-dev, user: "
        "clrk-dev, namespace: team}  # a flow mapping\n", 1)
    path.write_text(text)
    path.chmod(0o600)
    return text


def test_context_list_use_current(shared_dev_server: DevServer, tmp_path: Path) -> None:
    s = shared_dev_server
    path = tmp_path / "config"
    before = two_contexts(s, path)
    listed = s.clrk("--kubeconfig", str(path), "context", "list").stdout.splitlines()
    assert listed[0].split() == ["CURRENT", "NAME", "CLUSTER", "AUTHINFO", "NAMESPACE"]
    assert listed[1].split() == ["team", "clrk-dev", "clrk-dev", "team"]
    assert listed[2].split() == ["*", "clrk-dev", "clrk-dev", "clrk-dev", "default"]
    assert run("--kubeconfig", str(path), "context", "current").stdout == "clrk-dev\n"
    r = run("--kubeconfig", str(path), "context", "use", "team")
    assert r.stdout == 'Switched to context "team".\n'
    after = path.read_text()
    assert after == before.replace("current-context: clrk-dev", "current-context: team")
    assert path.stat().st_mode & 0o777 == 0o600
    assert run("--kubeconfig", str(path), "context", "list").stdout.splitlines()[1].split(
        )[:2] == ["*", "team"]
    # kubectl reads what clrk wrote.
    assert subprocess.run([KUBECTL, "--kubeconfig", str(path), "config", "current-context"],
                          capture_output=True, text=True, check=True).stdout == "team\n"
    r = run("--kubeconfig", str(path), "context", "use", "nope")
    one_line_error(r, 'no context named "nope"')
    assert r.returncode == 1 and "team, clrk-dev" in r.stderr
    assert path.read_text() == after
    # The file is the one clients read: KUBECONFIG, and CLRK_KUBECONFIG before it.
    env = {"KUBECONFIG": str(path)}
    assert run("context", "current", env=env).stdout == "team\n"
    run("context", "use", "clrk-dev", env=env)
    assert run("context", "current", env={"CLRK_KUBECONFIG": str(path),
                                          "KUBECONFIG": "/nonexistent"}).stdout == "clrk-dev\n"
    doc = json.loads(run("context", "list", "-o", "json", env=env).stdout)
    assert doc["currentContext"] == "clrk-dev" and doc["kubeconfig"] == str(path)
    assert [c["name"] for c in doc["contexts"]] == ["team", "clrk-dev"]
    assert run("context", "list", "-o", "name", env=env).stdout == "team\nclrk-dev\n"


# --- 3. --version ---------------------------------------------------------------------


def test_version_flag() -> None:
    r = run("--version")
    assert r.returncode == 0 and r.stdout == run("version").stdout
    assert r.stdout.startswith("clrk ")


# --- 4. -o json|yaml everywhere, managedFields left out --------------------------------


def test_data_output_leaves_managed_fields_out(shared_dev_server: DevServer) -> None:
    s = shared_dev_server
    s.clrk("apply", "-f", "-", input=task_agent("conv-mf"))
    s.clrk("run-task", "conv-mf", "--timeout", "10", check=False)
    docs = {
        "get": json.loads(s.clrk("get", "ta", "conv-mf", "-o", "json").stdout),
        "get list": yaml.safe_load(s.clrk("get", "ta", "-o", "yaml").stdout)["items"],
        "get -o=json": json.loads(s.clrk("get", "ta", "conv-mf", "-o=json").stdout),
        "agents get": yaml.safe_load(s.clrk("agents", "get", "conv-mf", "-o", "yaml").stdout),
        "agents list": json.loads(s.clrk("agents", "list", "-o", "json").stdout)["items"],
        "invocations": json.loads(
            s.clrk("agents", "invocations", "conv-mf", "-o", "json").stdout)["items"],
        "pools list": yaml.safe_load(s.clrk("pools", "list", "-o", "yaml").stdout)["items"],
        "pools get": json.loads(s.clrk("pools", "get", "default", "-o", "json").stdout),
    }
    for what, doc in docs.items():
        for obj in doc if isinstance(doc, list) else [doc]:
            assert obj["metadata"]["name"], what
            assert "managedFields" not in obj["metadata"], what
    assert docs["get"]["kind"] == "TaskAgent" and docs["get -o=json"] == docs["get"]
    assert docs["invocations"] and docs["agents list"]
    full = json.loads(s.clrk("get", "ta", "conv-mf", "-o", "json",
                             "--show-managed-fields").stdout)
    assert full["metadata"]["managedFields"][0]["manager"] == "clrk"
    full = yaml.safe_load(s.clrk("agents", "get", "conv-mf", "-o", "yaml",
                                 "--show-managed-fields").stdout)
    assert full["metadata"]["managedFields"]
    # As kubectl: json is indented by four spaces.
    assert s.clrk("get", "ta", "conv-mf", "-o", "json").stdout.startswith(
        '{\n    "apiVersion"')
    r = s.clrk("agents", "list", "-o", "toml", check=False)
    one_line_error(r, "unknown output format 'toml': use json or yaml")


# --- 5. get: jsonpath, several kinds, -A, -w; delete: several kinds, --all --------------


JSONPATHS = [
    "{.items[*].metadata.name}",
    '{range .items[*]}{.kind}/{.metadata.name}{"\\t"}{.spec.workerPoolRef}{"\\n"}{end}',
    '{.items[0].status.conditions[?(@.type=="Accepted")].status}',
    "{.items[0].metadata.labels}",
    "{.items[0].spec.template}",
    "{..image}",
    "{.items[-1:].metadata.name}",
    "kind={.kind} {.items[0].metadata.generation}",
    "{.items[*]['metadata.name','kind']}",
    "{.items[0].metadata.managedFields[0].manager}",
    "{.items[0].spec.nothing}",
    "{.items[*].status.conditions[?(@.status!=\"True\")].reason}",
]


def test_get_jsonpath_prints_what_kubectl_prints(shared_dev_server: DevServer) -> None:
    s = shared_dev_server
    s.kubectl("create", "namespace", "conv-jp", check=False)
    s.clrk("apply", "-n", "conv-jp", "-f", "-",
           input=task_agent("jp-a") + "---\n" + daemon_agent("jp-b"))
    eventually(lambda: s.kubectl("get", "-n", "conv-jp", "ta", "jp-a", "-o",
                                 "jsonpath={.status.servingRevisionName}").stdout,
               "the agent never got a revision")
    # All templates in one (a clrk run starts in seconds), told apart by a marker.
    template = "<|>".join(JSONPATHS)
    for args in (["ta,da"], ["ta", "jp-a"]):
        ours = s.clrk("-n", "conv-jp", "get", *args, "-o", f"jsonpath={template}")
        theirs = s.kubectl("-n", "conv-jp", "get", *args, "-o", f"jsonpath={template}")
        for path, mine, kubectls in zip(JSONPATHS, ours.stdout.split("<|>"),
                                        theirs.stdout.split("<|>"), strict=True):
            assert mine == kubectls, (args, path, mine, kubectls)


def test_get_jsonpath_errors() -> None:
    r = run("get", "ta", "-o", "jsonpath={.items[0")
    one_line_error(r, "error parsing jsonpath")


def test_get_several_kinds(shared_dev_server: DevServer) -> None:
    s = shared_dev_server
    s.kubectl("create", "namespace", "conv-many", check=False)
    s.clrk("apply", "-n", "conv-many", "-f", "-",
           input=task_agent("many-t") + "---\n" + daemon_agent("many-d"))
    for args in (["ta,da"], ["ta", "da"], ["taskagents,daemonagents"]):
        out = s.clrk("-n", "conv-many", "get", *args).stdout
        sections = out.strip().split("\n\n")
        assert len(sections) == 2, out
        assert sections[0].splitlines()[0].startswith("NAME ") and "ACCEPTED" in sections[0]
        assert sections[1].splitlines()[0].startswith("NAME ") and "RESTARTS" in sections[1]
        assert sections[0].splitlines()[1].startswith("taskagent.clrk.apoxy.dev/many-t ")
        assert sections[1].splitlines()[1].startswith("daemonagent.clrk.apoxy.dev/many-d ")
    # One kind: bare names, as before.
    assert s.clrk("-n", "conv-many", "get", "ta").stdout.splitlines()[1].startswith("many-t ")
    # KIND/NAME, -o name, a List for several kinds.
    assert s.clrk("-n", "conv-many", "get", "ta/many-t", "da/many-d", "-o", "name"
                  ).stdout == "taskagent/many-t\ndaemonagent/many-d\n"
    doc = yaml.safe_load(s.clrk("-n", "conv-many", "get", "ta,da", "-o", "yaml").stdout)
    assert doc["kind"] == "List"
    assert [i["kind"] for i in doc["items"]] == ["TaskAgent", "DaemonAgent"]
    # -A: every namespace, with a NAMESPACE column.
    out = s.clrk("get", "ta,da", "-A").stdout
    assert re.search(r"^conv-many\s+taskagent\.clrk\.apoxy\.dev/many-t\s", out, re.M), out
    assert re.search(r"^conv-many\s+daemonagent\.clrk\.apoxy\.dev/many-d\s", out, re.M), out
    # Found and missing names: the found printed, the missing said, exit 1.
    r = s.clrk("-n", "conv-many", "get", "ta", "many-t", "nobody", check=False)
    assert r.returncode == 1 and "many-t" in r.stdout and '"nobody" not found' in r.stderr
    s.kubectl("create", "namespace", "conv-empty", check=False)
    r = s.clrk("-n", "conv-empty", "get", "ta", check=False)
    assert r.returncode == 0 and r.stdout == ""
    assert r.stderr.strip() == "No resources found in conv-empty namespace."
    one_line_error(s.clrk("get", "ta", "x", "-A", check=False), "across all namespaces")


class Lines:
    """The lines a process prints, read by a thread, waited for with a timeout."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.queue: queue.Queue[str] = queue.Queue()
        assert proc.stdout is not None
        stdout = proc.stdout

        def read() -> None:
            for line in stdout:
                self.queue.put(line)

        threading.Thread(target=read, daemon=True).start()

    def next(self, timeout: float = 30) -> str:
        return self.queue.get(timeout=timeout).rstrip("\n")


def test_get_watch(shared_dev_server: DevServer) -> None:
    s = shared_dev_server
    s.kubectl("create", "namespace", "conv-watch", check=False)
    s.clrk("apply", "-n", "conv-watch", "-f", "-", input=task_agent("watch-a"))
    proc = subprocess.Popen([CLRK, "--kubeconfig", str(s.kubeconfig), "-n", "conv-watch",
                             "get", "ta", "-w"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        lines = Lines(proc)
        header = lines.next()
        assert header.split()[:3] == ["NAME", "POOL", "IMAGE"], header
        assert lines.next().startswith("watch-a ")
        s.clrk("apply", "-n", "conv-watch", "-f", "-", input=task_agent("watch-b"))
        assert lines.next().startswith("watch-b ")  # added; then changed as it settles
        s.kubectl("-n", "conv-watch", "delete", "ta", "watch-a", "--wait=false")
        while not (line := lines.next()).startswith("watch-a "):
            assert line.startswith("watch-b "), line
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0 and "Traceback" not in err, err
    # --watch-only: only the changes, the header before the first.
    proc = subprocess.Popen([CLRK, "--kubeconfig", str(s.kubeconfig), "-n", "conv-watch",
                             "get", "ta", "watch-c", "--watch-only", "-o", "name"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        lines = Lines(proc)
        time.sleep(1)  # listed and watching (a change before the watch is not shown)
        s.clrk("apply", "-n", "conv-watch", "-f", "-", input=task_agent("watch-c"))
        assert lines.next() == "taskagent/watch-c"
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0
    one_line_error(s.clrk("get", "ta,da", "-w", check=False), "watch is only supported")


def test_delete_several_kinds_and_all(shared_dev_server: DevServer) -> None:
    s = shared_dev_server
    s.kubectl("create", "namespace", "conv-del", check=False)
    s.clrk("apply", "-n", "conv-del", "-f", "-", input="---\n".join([
        task_agent("del-a"), task_agent("del-b"), daemon_agent("del-c")]))
    s.clrk("apply", "-f", "-", input=task_agent("del-elsewhere"))
    one_line_error(s.clrk("-n", "conv-del", "delete", "ta", check=False),
                   "give the names to delete, or --all")
    one_line_error(s.clrk("delete", check=False), "give KIND NAME..., KIND --all or -f FILE")
    one_line_error(s.clrk("delete", "ta", "del-a", "--all", check=False), "no names with it")
    out = s.clrk("-n", "conv-del", "delete", "ta,da", "--all").stdout
    assert sorted(out.splitlines()) == ['daemonagent.clrk.apoxy.dev "del-c" deleted',
                                        'taskagent.clrk.apoxy.dev "del-a" deleted',
                                        'taskagent.clrk.apoxy.dev "del-b" deleted']
    assert s.kubectl("get", "-n", "conv-del", "ta,da", "-o", "name").stdout == ""
    assert "del-elsewhere" in s.kubectl("get", "ta", "-o", "name").stdout
    s.clrk("apply", "-n", "conv-del", "-f", "-",
           input=task_agent("del-d") + "---\n" + daemon_agent("del-e"))
    out = s.clrk("-n", "conv-del", "delete", "ta", "da", "--all").stdout
    assert len(out.splitlines()) == 2
    s.clrk("apply", "-n", "conv-del", "-f", "-", input=task_agent("del-f"))
    assert s.clrk("-n", "conv-del", "delete", "ta/del-f").stdout == (
        'taskagent.clrk.apoxy.dev "del-f" deleted\n')


# --- 6. agents get --------------------------------------------------------------------


def shown(s: DevServer, name: str, needle: str) -> str | None:
    """`clrk agents get NAME` once it shows ``needle``."""
    out = s.clrk("agents", "get", name).stdout
    return out if needle in out else None


def test_agents_get_explains_the_agent(shared_dev_server: DevServer) -> None:
    s = shared_dev_server
    s.clrk("apply", "-f", "-", input=task_agent("conv-nopool", pool="nope"))
    got = eventually(lambda: shown(s, "conv-nopool", "phase:       Failed"), "never Failed")
    assert "reason:      WorkerPoolNotFound" in got
    assert 'message:     WorkerPool "nope" does not exist in namespace default' in got
    assert "revision:    conv-nopool-00001" in got
    assert "recent invocations: none" in got
    with ThreadPoolExecutor(max_workers=3) as pool:
        list(pool.map(lambda _: s.clrk("run-task", "conv-nopool", "--timeout", "10",
                                       check=False), range(6)))
    got = s.clrk("agents", "get", "conv-nopool").stdout
    table = got.split("recent invocations:\n")[1].splitlines()
    assert table[0].split() == ["NAME", "PHASE", "STARTED", "DURATION", "TOKENS", "COST"]
    rows = [r.split() for r in table[1:]]
    assert len(rows) == 5 and all(r[0].startswith("conv-nopool-") for r in rows), got
    assert all(r[1] == "Rejected" for r in rows), got
    newest = json.loads(s.clrk("agents", "invocations", "conv-nopool", "-o", "json").stdout)
    assert rows[0][0] == newest["items"][-1]["metadata"]["name"]  # newest first
    listed = s.clrk("agents", "list").stdout
    assert any("conv-nopool" in line and "Failed (WorkerPoolNotFound)" in line
               for line in listed.splitlines()), listed
    # Waiting for a worker is Pending, not Failed.
    s.clrk("apply", "-f", "-", input=task_agent("conv-waiting"))
    got = eventually(lambda: shown(s, "conv-waiting", "conv-waiting-00001"), "no revision")
    assert "phase:       Pending" in got and "reason:      WorkerPoolNotReady" in got


# --- 7. help: every option explained, 80 columns, no colour ----------------------------


def all_commands() -> list[tuple[tuple[str, ...], Any]]:
    return list(walk(main.command()))


def test_every_option_has_help() -> None:
    missing = []
    for path, command in all_commands():
        for param in command.params:
            if getattr(param, "param_type_name", "") != "option" or param.hidden:
                continue
            name = next((o for o in param.opts if o.startswith("--")), param.opts[0])
            if not (param.help or "").strip() and (" ".join(path), name) not in DEV_WITHOUT_HELP:
                missing.append(f"clrk {' '.join(path)} {name}")
    assert not missing, missing


def test_help_fits_80_columns_without_colour() -> None:
    env = {k: v for k, v in os.environ.items()
           if k not in ("COLUMNS", "LINES", "FORCE_COLOR", "PY_COLORS", "TERMINAL_WIDTH")}

    def help_of(path: tuple[str, ...]) -> tuple[tuple[str, ...], subprocess.CompletedProcess[str]]:
        return path, subprocess.run([CLRK, *path, "--help"], capture_output=True, text=True,
                                    timeout=120, env=env, check=False)

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(help_of, [p for p, _ in all_commands()]))
    for path, r in results:
        where = f"clrk {' '.join(path)} --help"
        assert r.returncode == 0 and r.stderr == "", (where, r.stderr)
        assert "Usage: clrk" in r.stdout, where
        assert "\x1b[" not in r.stdout, where
        long = [line for line in r.stdout.splitlines() if len(line) > 80]
        assert not long, (where, long)
        assert "<bool>" not in r.stdout, where  # flags take no value: no type shown


def test_no_colour_with_no_color_on_a_terminal() -> None:
    """On a terminal, NO_COLOR leaves colour out (rich may still embolden)."""
    env = {**{k: v for k, v in os.environ.items() if k != "FORCE_COLOR"}, "NO_COLOR": "1",
           "COLUMNS": "100"}
    pid, fd = pty.fork()
    if pid == 0:  # the child: the help on a terminal
        os.execve(CLRK, [CLRK, "get", "--help"], env)
    chunks = []
    while True:
        try:
            data = os.read(fd, 65536)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    os.waitpid(pid, 0)
    text = b"".join(chunks).decode(errors="replace")
    assert "Usage:" in text
    colours = re.findall(r"\x1b\[([0-9;]*)m", text)
    assert not [c for c in colours if re.search(r"(^|;)(3[0-9]|9[0-7]|4[0-9])(;|$)", c)], \
        colours


# --- 8. errors: one line, no traceback ---------------------------------------------------


@pytest.mark.parametrize(("args", "needle", "code"), [
    (["get"], "give a kind", 1),
    (["get", "ta", "--bogus"], "No such option: --bogus (see 'clrk get --help')", 2),
    (["agents", "get"], "Missing argument 'NAME'", 2),
    (["context", "use"], "Missing argument 'NAME'", 2),
    (["nosuchcommand"], "No such command 'nosuchcommand'", 2),
    (["get", "ta", "-o", "toml"], "unknown output format 'toml'", 1),
    (["status", "-o", "wide"], "unknown output format 'wide': use json or yaml", 1),
    (["worker", "--index", "99", "--api-kubeconfig", "k", "--data-dir", "d"],
     "Invalid value for '--index'", 2),
    (["worker", "--image-gc-high-threshold", "80", "--image-gc-low-threshold", "85",
      "--api-kubeconfig", "k", "--data-dir", "d"],
     "Invalid value for --image-gc-low-threshold: the image disk marks need 0 <= low < "
     "high <= 100, not low 85 and high 80", 2),
])
def test_usage_errors_are_one_line(shared_dev_server: DevServer, args: list[str],
                                   needle: str, code: int) -> None:
    r = shared_dev_server.clrk(*args, check=False)
    one_line_error(r, needle)
    assert r.returncode == code, r.stderr
    assert r.stderr.startswith("error: ")


def test_a_group_without_a_command_prints_its_help() -> None:
    r = run("context")
    assert r.returncode == 0 and "Usage: clrk context" in r.stdout and "use" in r.stdout
