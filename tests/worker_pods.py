"""Worker processes as their pods would run them, for the cluster tests: the container
of a pool's Deployment, its downward-API environment, its ServiceAccount's token and the
cluster CA as projected files at the path a kubelet mounts them.

No kubelet runs here (as with envtest): this plays its part, resolving ``$(VAR)`` in the
args, and mounting the files in a mount namespace of the worker's own (so the host's
/var/run/secrets is untouched but for an empty mount point, removed afterwards). Where
this host differs from a pod network: each worker gets a data dir, a free port on
loopback and an ``--index`` of its own (a pod has its own network namespace).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from tests.clrk_on_kube import CLRK
from tests.images import Registry
from tests.kube_cluster import KubeCluster, free_port
from tests.processes import terminate

NS = "default"  # the installed default WorkerPool's namespace
POOL = "default"
SA_MOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")
SERVING = " serving on "  # what a worker logs once it serves


@dataclass
class WorkerPod:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path
    url: str
    command: list[str]
    env: dict[str, str]

    def restart(self) -> None:
        """The kubelet restarting a crashed container: same pod, same data dir. Returns
        once it serves again, so it has swept what its predecessor left (a SIGTERM
        before that would leave the leftovers for good)."""
        assert self.proc.poll() is not None
        served = self.log_text().count(SERVING)
        self.proc = subprocess.Popen(self.command, stdout=self.log.open("ab"),
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     env=self.env)
        until(lambda: self.log_text().count(SERVING) > served or self.proc.poll() is not None,
              f"{self.name} never served again")
        assert self.proc.poll() is None, self.log_text()[-3000:]

    def kill(self) -> None:
        """kill -9: no drain, no goodbye; its sandboxes are left for the restart."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        terminate(self.proc, 60)


def until(check: Callable[[], Any], what: str, timeout: float = 90) -> Any:
    deadline = time.monotonic() + timeout
    while not (got := check()):
        assert time.monotonic() < deadline, what
        time.sleep(0.3)
    return got


def get(cluster: KubeCluster, *args: str) -> Any:
    r = cluster.kubectl("get", *args, "-o", "json", check=False)
    return json.loads(r.stdout) if r.returncode == 0 else None


@contextmanager
def mount_point() -> Iterator[None]:
    """The empty directories a kubelet's mount needs on this host, while it runs."""
    made = [p for p in (SA_MOUNT, *SA_MOUNT.parents) if not p.exists()]
    SA_MOUNT.mkdir(parents=True, exist_ok=True)
    try:
        yield
    finally:
        for path in made:
            path.rmdir()


def start_worker_pod(cluster: KubeCluster, name: str, directory: Path, registry: Registry,
                     index: int = 0) -> WorkerPod:
    """The pool Deployment's container as a kubelet would start it for pod ``name``."""
    deploy = cluster.kubectl("get", "deployment", f"{POOL}-workers", "-n", NS, "-o",
                             "json").stdout
    pod = json.loads(deploy)["spec"]["template"]["spec"]
    [container] = pod["containers"]
    account = pod["serviceAccountName"]
    projected = directory / "serviceaccount"
    projected.mkdir(parents=True)
    token = cluster.kubectl("create", "token", account, "-n", NS,
                            "--duration=2h").stdout.strip()
    (projected / "token").write_text(token)
    (projected / "ca.crt").write_bytes(cluster.ca_file.read_bytes())
    (projected / "namespace").write_text(NS)
    port = free_port()
    downward = {"POD_NAME": name, "POD_NAMESPACE": NS, "POD_IP": "127.0.0.1"}
    api = urlsplit(cluster.url)
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("KUBE")},
           **downward, "KUBERNETES_SERVICE_HOST": api.hostname or "",
           "KUBERNETES_SERVICE_PORT": str(api.port)}
    for var in container.get("env", []):
        if "value" in var:
            env[var["name"]] = var["value"]
        else:
            assert var["name"] in downward, var
    args = [re.sub(r"\$\((\w+)\)", lambda m: downward[str(m.group(1))], a)
            for a in container["args"]]
    # Where this host differs from a pod (see above), and the test registry over HTTP.
    args = [a for a in args if not a.startswith(("--data-dir=", "--port="))]
    args += [f"--data-dir={directory / 'data'}", f"--port={port}",
             f"--insecure-registry={registry.host}", f"--index={index}"]
    log = directory / "worker.log"
    script = 'mount --bind "$0" "$1" && shift && exec "$@"'
    command = ["unshare", "--mount", "--propagation", "private", "sh", "-c", script,
               str(projected), str(SA_MOUNT), CLRK, *args]
    proc = subprocess.Popen(command, stdout=log.open("ab"), stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, env=env)
    return WorkerPod(name, proc, log, f"http://127.0.0.1:{port}", command, env)


def ready_workers(cluster: KubeCluster) -> int:
    pool = get(cluster, "workerpool", POOL, "-n", NS) or {}
    return int((pool.get("status") or {}).get("readyReplicas") or 0)
