"""clrk installed into the test cluster: what a kubelet would do for its Deployment.

No kubelet runs (as with envtest), so the tests play its part: they start the process the
installed Deployment describes (its container's args and environment, the
ServiceAccount's token, the serving Secret's files) on an address of its own, point the
Services' Endpoints at it (kube-apiserver refuses loopback endpoints), and report the
Deployment's rollout in its status as the deployment controller would.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import ssl
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.kube_cluster import AGGREGATED_ADDRESS, KubeCluster
from tests.processes import terminate

CLRK = str(Path(sys.executable).parent / "clrk")
NAMESPACE = "clrk"
DEPLOYMENT = "clrk-controller-manager"
SERVICE_ACCOUNT = "clrk-controller-manager"


@dataclass
class ControllerManager:
    proc: subprocess.Popen[bytes]
    log: Path
    url: str
    identity: str

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        terminate(self.proc, 20)

    def kill(self) -> None:
        """kill -9: no goodbye, the Lease is left to expire."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()


def get_json(cluster: KubeCluster, *args: str) -> Any:
    return json.loads(cluster.kubectl("get", *args, "-o", "json").stdout)


def container(cluster: KubeCluster) -> dict[str, Any]:
    deploy = get_json(cluster, "deployment", DEPLOYMENT, "-n", NAMESPACE)
    containers: list[dict[str, Any]] = deploy["spec"]["template"]["spec"]["containers"]
    return containers[0]


def _with(args: list[str], **overrides: str) -> list[str]:
    """The Deployment's args with ``--name=value`` replaced (or added)."""
    out = [a for a in args if a.split("=", 1)[0].removeprefix("--").replace("-", "_")
           not in overrides]
    return out + [f"--{k.replace('_', '-')}={v}" for k, v in overrides.items()]


def start_controller_manager(cluster: KubeCluster, directory: Path, identity: str, *,
                             address: str = AGGREGATED_ADDRESS, secure_port: int = 8443,
                             ingress_port: int = 8080,
                             extra: tuple[str, ...] = ()) -> ControllerManager:
    """The installed Deployment's container, run here as its pod would run it."""
    directory.mkdir(parents=True, exist_ok=True)
    spec = container(cluster)
    secret = get_json(cluster, "secret", "clrk-apiserver-tls", "-n", NAMESPACE)
    tls = directory / "tls"
    tls.mkdir(exist_ok=True)
    for key in ("tls.crt", "tls.key"):
        (tls / key).write_bytes(base64.b64decode(secret["data"][key]))
    token = cluster.kubectl("create", "token", SERVICE_ACCOUNT, "-n", NAMESPACE,
                            "--duration=4h").stdout.strip()
    kubeconfig = cluster.kubeconfig(token, f"sa-{identity}")
    args = _with(list(spec["args"]), data_dir=str(directory / "data"), bind_address=address,
                 secure_port=str(secure_port), ingress_port=str(ingress_port),
                 tls_cert_dir=str(tls), kubeconfig=str(kubeconfig))
    env = {**os.environ, "POD_NAME": identity, "POD_NAMESPACE": NAMESPACE}
    for var in spec.get("env", []):
        if "value" in var:
            env[var["name"]] = var["value"]
    log = directory / "controller-manager.log"
    proc = subprocess.Popen([CLRK, *args, *extra], stdout=log.open("ab"),
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
    cm = ControllerManager(proc, log, f"https://{address}:{secure_port}", identity)
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # the probe's own way: kubelet does not verify either
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"controller-manager exited {proc.returncode}:\n"
                                 f"{cm.log_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{cm.url}/readyz", context=ctx, timeout=2) as r:
                if r.status == 200:
                    return cm
        except OSError:
            pass
        time.sleep(0.2)
    cm.stop()
    raise AssertionError(f"controller-manager not ready:\n{cm.log_text()[-3000:]}")


def route_services(cluster: KubeCluster, address: str = AGGREGATED_ADDRESS) -> None:
    """The Endpoints the endpoints controller would write for the pod at ``address``."""
    endpoints = []
    for service in get_json(cluster, "services", "-n", NAMESPACE)["items"]:
        ports = [{"name": p.get("name", ""), "port": int(p["targetPort"]),
                  "protocol": p.get("protocol", "TCP")} for p in service["spec"]["ports"]]
        endpoints.append({"apiVersion": "v1", "kind": "Endpoints",
                          "metadata": {"name": service["metadata"]["name"],
                                       "namespace": NAMESPACE},
                          "subsets": [{"addresses": [{"ip": address}], "ports": ports}]})
    cluster.kubectl("apply", "-f", "-", input=json.dumps(
        {"apiVersion": "v1", "kind": "List", "items": endpoints}))


def report_rollout(cluster: KubeCluster) -> None:
    """The Deployment's status as its controller reports a finished rollout."""
    deploy = get_json(cluster, "deployment", DEPLOYMENT, "-n", NAMESPACE)
    n = deploy["spec"].get("replicas", 1)
    status = {"observedGeneration": deploy["metadata"]["generation"], "replicas": n,
              "updatedReplicas": n, "readyReplicas": n, "availableReplicas": n,
              "conditions": [{"type": "Available", "status": "True",
                              "reason": "MinimumReplicasAvailable",
                              "message": "Deployment has minimum availability."}]}
    cluster.kubectl("patch", "deployment", DEPLOYMENT, "-n", NAMESPACE,
                    "--subresource=status", "--type=merge", "-p",
                    json.dumps({"status": status}))


def wait_api_available(cluster: KubeCluster, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    message = ""
    while time.monotonic() < deadline:
        r = cluster.kubectl("get", "apiservice", "v1alpha1.clrk.apoxy.dev", "-o", "json",
                            check=False)
        if r.returncode == 0:
            conditions = json.loads(r.stdout).get("status", {}).get("conditions", [])
            available: dict[str, str] = next(
                (c for c in conditions if c["type"] == "Available"), {})
            if available.get("status") == "True":
                # Discovery is refreshed on its own schedule: wait until kubectl sees kinds.
                kinds = cluster.kubectl("api-resources", "--api-group", "clrk.apoxy.dev",
                                        "-o", "name", check=False).stdout.split()
                if kinds:
                    return
            message = available.get("message", "")
        time.sleep(0.5)
    raise AssertionError(f"the clrk APIService is not available: {message}")


def clrk(*args: str, kubeconfig: Path, check: bool = True, input: str | None = None,
         timeout: float = 300) -> subprocess.CompletedProcess[str]:
    r = subprocess.run([CLRK, "--kubeconfig", str(kubeconfig), *args], capture_output=True,
                       text=True, input=input, timeout=timeout, check=False)
    if check and r.returncode != 0:
        raise AssertionError(f"clrk {' '.join(args)} failed ({r.returncode}):\n"
                             f"{r.stdout}\n{r.stderr}")
    return r


# Images are never pulled here (no kubelet): any reference the install renders will do.
CONTROLLER_IMAGE = "registry.test/clrk-controller-manager:v0.1.0"
WORKER_IMAGE = "registry.test/clrk-worker:v0.1.0"


def install_args() -> list[str]:
    return ["install", "--yes", "--controller-image", CONTROLLER_IMAGE,
            "--worker-image", WORKER_IMAGE, "--timeout", "120"]


def install_and_run(cluster: KubeCluster, directory: Path
                    ) -> tuple[ControllerManager, list[str]]:
    """`clrk install`, then what the cluster's controllers and kubelet would do for its
    Deployment, then `clrk install` again (it now waits and applies the WorkerPool).
    Returns the running controller manager and what each install printed."""
    admin = cluster.kubeconfig()
    installs = [clrk(*install_args(), "--skip-wait", kubeconfig=admin).stdout]
    route_services(cluster)
    manager = start_controller_manager(cluster, directory / "pod-1", "pod-1")
    try:
        report_rollout(cluster)
        wait_api_available(cluster)
        installs.append(clrk(*install_args(), kubeconfig=admin).stdout)
    except BaseException:
        manager.stop()
        raise
    return manager, installs
