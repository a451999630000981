"""Every `clrk` and `kubectl` command line printed in README.md, in the quickstart
(`quickstart-first-agent.txt`) and in "Package a custom agent"
(`package-a-custom-agent.txt`) run as printed, in the order a reader runs them, against
one `clrk dev` with a worker; each exits 0. Placeholders are filled (`<your-registry>`
is the dev registry, `~/.clrk` this instance's data dir through CLRK_HOME). The few that
need Docker, a Kubernetes Service or the Gateway API run what README.md's "Product
documents under `clrk dev`" table says to run instead; the table is checked here too.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import ROOT, DevServer, remove_image_store, start_dev
from tests.images import oci_layout, python_slim_stand_in

pytestmark = pytest.mark.e2e
SPEC = ROOT / "docs" / "product"  # the product documents these come from, as published
README = ROOT / "README.md"
QUICKSTART = "quickstart-first-agent.txt"
PACKAGE = "package-a-custom-agent.txt"
REGISTRY = "127.0.0.1:5001"  # the port the documents print


@dataclass(frozen=True)
class Step:
    source: str   # README.md, or a product document's file name
    printed: str  # the command line as printed there
    run: str = ""  # what runs, when it differs (placeholders filled, or the stand-in)
    cwd: str = "."  # "." = the checkout, "work" = the reader's own agent directory
    streams: str = ""  # a command that runs until interrupted: this must appear first

    @property
    def command(self) -> str:
        return self.run or self.printed


README_STEPS = [
    Step("README.md", ".venv/bin/clrk image build -t word-count:0.1 --push examples/word-count"),
    Step("README.md", "kubectl apply -f examples/word-count/taskagent.yaml"),
    Step("README.md", ".venv/bin/clrk image ls"),
    Step("README.md", ".venv/bin/clrk image push agent.tar word-count:0.2",
         run="skopeo copy --quiet --src-tls-verify=false "
             f"docker://{REGISTRY}/word-count:0.1 docker-archive:agent.tar:word-count:0.2"
             " && .venv/bin/clrk image push agent.tar word-count:0.2 && rm agent.tar"),
    Step("README.md", "docker push 127.0.0.1:5001/word-count:0.3",
         run=".venv/bin/clrk image push word-count:0.1 word-count:0.3"),
    Step("README.md", "clrk dev status", run=".venv/bin/clrk dev status"),
    Step("README.md", "clrk dev\nwait-ready", run=".venv/bin/clrk dev wait-ready"),
    Step("README.md", "kubectl get taskagents,daemonagents,egressgateways"),
    Step("README.md", "kubectl get asr"),
    Step("README.md", ".venv/bin/clrk agents list --local"),
    Step("README.md", ".venv/bin/clrk secret set anthropic-credentials --from-env "
         "api-key=ANTHROPIC_API_KEY --local"),
    Step("README.md", ".venv/bin/clrk crds > crds.yaml",
         run=".venv/bin/clrk crds > crds.yaml && grep -q CustomResourceDefinition crds.yaml"
             " && rm crds.yaml"),
    Step("README.md", ".venv/bin/clrk status --local"),
    Step("README.md", ".venv/bin/clrk context list"),
    Step("README.md", """curl -sS "$INGRESS_URL/" -H 'X-Clrk-TaskAgent: default/word-count' """
         """-H 'X-Clrk-Trigger: http' \\
  -H 'content-type: application/json' --data '{"text":"hello world from clrk"}'""",
         run="""curl -fsS "$INGRESS_URL/" -H 'X-Clrk-TaskAgent: default/word-count' """
             """-H 'X-Clrk-Trigger: http' -H 'content-type: application/json' """
             """--data '{"text":"hello world from clrk"}' | grep -q '"word_count": 4'"""),
    Step("README.md", """.venv/bin/clrk agents run-task word-count -i '{"text":"hello"}' """
         "--local"),
    Step("README.md", "kubectl get inv -w", streams="Succeeded"),
    Step("README.md", ".venv/bin/clrk agents invocations word-count --local"),
    Step("README.md", ".venv/bin/clrk agents logs word-count -f --local", streams="word_count"),
    Step("README.md", """kubectl patch taskagent word-count --type merge
-p '{"spec":{"pinnedRevisionName":"word-count-00001"}}'""",
         run="""kubectl patch taskagent word-count --type merge """
             """-p '{"spec":{"pinnedRevisionName":"word-count-00001"}}' && """
             """kubectl patch taskagent word-count --type json """
             """-p '[{"op":"remove","path":"/spec/pinnedRevisionName"}]'"""),
]
QUICKSTART_STEPS = [
    Step(QUICKSTART, "clrk agents get echo-bot --local"),
    Step(QUICKSTART, "kubectl get egressgateway echo-bot"),
    Step(QUICKSTART, "kubectl get secret anthropic-credentials"),
]
PACKAGE_STEPS = [
    Step(PACKAGE, "docker buildx build \\\n--platform=linux/amd64,linux/arm64 \\\n"
         "-t <your-registry>/word-count:0.1 --push .",
         run="clrk image build -t word-count:0.1 --push .", cwd="work"),
    Step(PACKAGE, "clrk apply -f taskagent.yaml --local", cwd="work"),
    Step(PACKAGE, "kubectl get gateway word-count",
         run="kubectl wait taskagent/word-count --for=condition=ImageReady --timeout=120s"),
    Step(PACKAGE, "kubectl port-forward -n clrk svc/clrk-word-count 18080:80 &",
         run='test -n "$INGRESS_URL"'),
    Step(PACKAGE, "curl -sS http://localhost:18080/ \\\n-H 'X-Clrk-TaskAgent: "
         "default/word-count' \\\n-H 'X-Clrk-Trigger: http' \\\n-H 'content-type: "
         "application/json' \\\n--data '{\"text\":\"hello world from clrk\"}'",
         run="""curl -fsS "$INGRESS_URL/" -H 'X-Clrk-TaskAgent: default/word-count' """
             """-H 'X-Clrk-Trigger: http' -H 'content-type: application/json' """
             """--data '{"text":"hello world from clrk"}' | grep -q '"word_count": 4'"""),
    Step(PACKAGE, "TAG=$(git rev-parse --short HEAD)\ndocker buildx build "
         "--platform=linux/amd64 \\\n-t <your-registry>/word-count:$TAG --push .\n"
         "sed -i.bak \"s|word-count:.*|word-count:$TAG|\" taskagent.yaml\n"
         "clrk apply -f taskagent.yaml --local",
         run=f"TAG=$(git -C {ROOT} rev-parse --short HEAD) && "
             "clrk image build -t word-count:$TAG --push . && "
             "sed -i.bak \"s|word-count:.*|word-count:$TAG|\" taskagent.yaml && "
             "clrk apply -f taskagent.yaml --local && "
             "grep -q \"word-count:$TAG\" taskagent.yaml", cwd="work"),
    Step(PACKAGE, "clrk agents logs <name>", run="clrk agents logs word-count"),
]
# The reader's own agent directory, as "Package a custom agent" writes it.
DOCKERFILE = """FROM python:3.12-slim
# Standard CA trust path - clrk relies on the image to ship CA certs.
# python:3.12-slim already includes ca-certificates.
COPY agent.py /agent.py
ENTRYPOINT ["python", "/agent.py"]
"""
TASKAGENT = """apiVersion: clrk.apoxy.dev/v1alpha1
kind: TaskAgent
metadata:
  name: word-count
spec:
  workerPoolRef: default
  # Caller-visible deadline. Pinned end-to-end through the ingress
  # HTTPRoute. Default 100s; leave headroom for cold start.
  timeout: 60s
  template:
    spec:
      image: <your-registry>/word-count:0.1
      # secretKeyRef is a no-op today - use literal value for
      # config, credential injection for secrets.
      env:
      - name: GREETING
        value: "hi"
"""
AGENT = """#!/usr/bin/env python3
import json, os, sys
envelope = json.load(sys.stdin)
payload = envelope.get("data", {})
text = payload.get("text", "")
print(json.dumps({
"word_count": len(text.split()),
"envelope_id": envelope.get("id"),
}), flush=True)
"""


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the registry binds
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@pytest.fixture(scope="module")
def dev(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevServer]:
    """The quickstart's first command, as printed (the key is a test value)."""
    assert _port_free(5001), "the documents' registry port 5001 is taken on this host"
    server = start_dev(tmp_path_factory.mktemp("documented") / "clrk", "--registry-port",
                       "5001", "--apply", "_examples/echo-bot/manifests", "--secret",
                       "anthropic-credentials=ANTHROPIC_API_KEY:api-key",
                       env={"ANTHROPIC_API_KEY": "sk-ant-test"}, workers=1)
    try:
        server.wait_for_worker()
        yield server
    finally:
        server.stop()
        remove_image_store(server.data_dir)


def _env(dev: DevServer) -> dict[str, str]:
    return {**os.environ, "CLRK_HOME": str(dev.data_dir),
            "KUBECONFIG": str(dev.kubeconfig), "INGRESS_URL": dev.ingress,
            "ANTHROPIC_API_KEY": "sk-ant-test", "NO_COLOR": "1",
            "PATH": f"{ROOT / '.venv' / 'bin'}:{os.environ['PATH']}"}


def _run(step: Step, dev: DevServer, work: Path) -> str:
    cwd = work if step.cwd == "work" else ROOT
    if step.streams:
        proc = subprocess.Popen(["bash", "-c", step.command], cwd=cwd, env=_env(dev),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert proc.stdout is not None
        seen = ""
        try:
            for line in proc.stdout:  # it runs until interrupted, as a reader's would
                seen += line
                if step.streams in line:
                    break
        finally:
            proc.terminate()
            proc.wait(timeout=10)
        assert step.streams in seen, (step.printed, seen, proc.stderr and proc.stderr.read())
        return seen
    r = subprocess.run(["bash", "-c", f"set -o pipefail; {step.command}"], cwd=cwd,
                       env=_env(dev), capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, (step.printed, step.command, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr
    return r.stdout


def _printed_in(step: Step) -> bool:
    text = README.read_text() if step.source == "README.md" else \
        (SPEC / step.source).read_text()
    def squeeze(t: str) -> str:
        return " ".join(t.replace("\\\n", " ").split())
    return squeeze(step.printed) in squeeze(text)


@pytest.mark.parametrize("step", README_STEPS + QUICKSTART_STEPS + PACKAGE_STEPS,
                         ids=lambda s: s.printed.split("\n")[0][:40])
def test_each_step_is_printed_where_it_says(step: Step) -> None:
    assert _printed_in(step), f"{step.source} does not print: {step.printed}"


def test_the_readme_lists_what_to_run_instead() -> None:
    text = README.read_text()
    for printed in ("kubectl port-forward", "kubectl get gateway", "docker buildx build",
                    "docker push"):
        assert printed in text.split("## Product documents under `clrk dev`")[1], printed


def test_every_documented_command_runs(dev: DevServer, tmp_path: Path) -> None:
    layout = oci_layout(python_slim_stand_in(), tmp_path / "python-slim", "3.12-slim")
    dev.image("import", str(layout), "--name", "python:3.12-slim")
    work = tmp_path / "word-count"
    work.mkdir()
    (work / "agent.py").write_text(AGENT)
    (work / "Dockerfile").write_text(DOCKERFILE)
    (work / "taskagent.yaml").write_text(TASKAGENT.replace("<your-registry>", REGISTRY))
    outputs = {}
    for step in QUICKSTART_STEPS + README_STEPS:
        outputs[step.printed] = _run(step, dev, work)
    # echo-bot's image was never built here: `agents get` says so, with the reason.
    deadline = time.monotonic() + 120
    while "phase:       Failed" not in (got := dev.clrk("agents", "get", "echo-bot").stdout):
        assert time.monotonic() < deadline, got
        time.sleep(1)
    assert "reason:      ImagePullFailed" in got, got
    assert "echo-bot:0.1" in got.split("message:")[1].splitlines()[0], got
    # The guide starts afresh: README's `kubectl apply` (another field manager) made it.
    dev.kubectl("delete", "taskagent", "word-count")
    for step in PACKAGE_STEPS:
        outputs[step.printed] = _run(step, dev, work)
    # What the quickstart checks with them.
    assert "echo-bot" in outputs["kubectl get egressgateway echo-bot"]
    got = outputs[".venv/bin/clrk agents run-task word-count -i '{\"text\":\"hello\"}' --local"]
    assert json.loads(got)["word_count"] == 1
    shutil.rmtree(work)
