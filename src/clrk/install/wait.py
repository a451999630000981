"""Waiting until an installed clrk serves: its Deployment rolled out and its APIService
Available (kube-aggregator reached the API server through the Service and trusted its
certificate).

When it does not happen in time the error says what is missing, in the cluster's own words:
the Deployment's replica counts and conditions, the pods' waiting reasons (an image that
cannot be pulled, a crash loop), the APIService's Available reason and message.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from lightkube import ApiError, Client
from lightkube.resources.apiregistration_v1 import APIService
from lightkube.resources.apps_v1 import Deployment
from lightkube.resources.core_v1 import Pod

from clrk.client import to_dict
from clrk.install import InstallError
from clrk.install.options import APISERVICE, CONTROLLER, selector


def _conditions(status: dict[str, Any]) -> str:
    parts = []
    for c in status.get("conditions") or []:
        detail = ": ".join(x for x in (c.get("reason"), c.get("message")) if x)
        parts.append(f"{c.get('type')}={c.get('status')}" + (f" ({detail})" if detail else ""))
    return "; ".join(parts)


def deployment_problem(dep: dict[str, Any] | None, namespace: str) -> str | None:
    """Why the controller-manager Deployment is not rolled out, or None when it is."""
    what = f"deployment {namespace}/{CONTROLLER}"
    if dep is None:
        return f"{what} does not exist"
    spec, status = dep.get("spec") or {}, dep.get("status") or {}
    generation = (dep.get("metadata") or {}).get("generation") or 0
    observed = status.get("observedGeneration") or 0
    want = spec.get("replicas", 1)
    updated = status.get("updatedReplicas") or 0
    available = status.get("availableReplicas") or 0
    replicas = status.get("replicas") or 0
    if observed >= generation and updated == want == available and replicas == want:
        return None
    problem = (f"{what}: generation {generation} not observed yet (observed {observed})"
               if observed < generation else
               f"{what}: {updated}/{want} updated, {available}/{want} available, "
               f"{replicas} in total")
    conditions = _conditions(status)
    return f"{problem}; {conditions}" if conditions else problem


def pod_problems(pods: list[dict[str, Any]]) -> list[str]:
    """The controller-manager pods' reasons for not running (waiting or last terminated)."""
    out = []
    for pod in pods:
        name = (pod.get("metadata") or {}).get("name", "")
        status = pod.get("status") or {}
        if status.get("phase") == "Pending" and not status.get("containerStatuses"):
            unscheduled = [c for c in status.get("conditions") or []
                           if c.get("type") == "PodScheduled" and c.get("status") == "False"]
            for c in unscheduled:
                out.append(f"pod {name}: not scheduled ({c.get('reason')}: {c.get('message')})")
        for cs in status.get("containerStatuses") or []:
            state = cs.get("state") or {}
            waiting = state.get("waiting")
            if waiting:
                message = waiting.get("message")
                out.append(f"pod {name}: container {cs.get('name')} waiting: "
                           f"{waiting.get('reason')}" + (f" ({message})" if message else ""))
            elif not cs.get("ready"):
                last = (cs.get("lastState") or {}).get("terminated")
                if last:
                    out.append(f"pod {name}: container {cs.get('name')} not ready, last exit "
                               f"{last.get('exitCode')} ({last.get('reason')})")
                else:
                    out.append(f"pod {name}: container {cs.get('name')} not ready")
    return out


def apiservice_problem(svc: dict[str, Any] | None) -> str | None:
    """Why the APIService is not Available, or None when it is."""
    what = f"apiservice {APISERVICE}"
    if svc is None:
        return f"{what} does not exist"
    for c in (svc.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Available":
            if c.get("status") == "True":
                return None
            return (f"{what}: Available={c.get('status')} ({c.get('reason')}: "
                    f"{c.get('message')})")
    return f"{what}: no Available condition yet"


def _get(client: Client, res: Any, name: str, namespace: str | None) -> dict[str, Any] | None:
    try:
        return to_dict(client.get(res, name, namespace=namespace))
    except ApiError as err:
        if err.status.code == 404:
            return None
        raise


def problems(client: Client, namespace: str) -> list[str]:
    """Everything that keeps clrk in ``namespace`` from serving; empty when it serves."""
    out = []
    dep = deployment_problem(_get(client, Deployment, CONTROLLER, namespace), namespace)
    if dep is not None:
        out.append(dep)
        match: dict[str, Any] = dict(selector())
        pods = [to_dict(p) for p in client.list(Pod, namespace=namespace, labels=match)]
        out += pod_problems(pods)
    svc = apiservice_problem(_get(client, APIService, APISERVICE, None))
    if svc is not None:
        out.append(svc)
    return out


def wait_ready(client: Client, namespace: str, timeout: float,
               progress: Callable[[str], None], *, interval: float = 2.0,
               clock: Callable[[], float] = time.monotonic,
               sleep: Callable[[float], None] = time.sleep) -> None:
    """Poll until the Deployment has rolled out and the APIService is Available; report each
    new state to ``progress``; raise :class:`InstallError` naming what is not ready after
    ``timeout`` seconds."""
    deadline = clock() + timeout
    last: list[str] = []
    while True:
        now = problems(client, namespace)
        if not now:
            return
        if now != last:
            for line in now:
                progress(f"waiting for {line}")
            last = now
        if clock() >= deadline:
            raise InstallError(f"not ready after {timeout:g}s: " + "; ".join(now))
        sleep(interval)
