"""`clrk install` and `clrk upgrade` against the real kube-apiserver: idempotent, a dry
run with no diff on an installed cluster, manifests the cluster and its schemas accept,
and an upgrade that keeps the worker count."""

from __future__ import annotations

import json
import re
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml

from clrk import __version__
from tests.clrk_on_kube import (
    CONTROLLER_IMAGE,
    DEPLOYMENT,
    NAMESPACE,
    clrk,
    get_json,
    install_args,
    report_rollout,
)
from tests.cluster.conftest import ClrkOnKube

pytestmark = pytest.mark.cluster

KUBE_VERSION = "1.32"
SUMMARY = re.compile(r"(\d+) created, (\d+) updated, (\d+) unchanged")


def _summary(output: str) -> tuple[int, int, int]:
    found = SUMMARY.findall(output)
    assert found, output
    created, updated, unchanged = (int(n) for n in found[-1])
    return created, updated, unchanged


def _installed_versions(clrk_on_kube: ClrkOnKube) -> dict[str, str]:
    """resourceVersion of every object install manages, by kind/namespace/name."""
    rendered = clrk(*install_args(), "-o", "yaml", kubeconfig=clrk_on_kube.admin).stdout
    out = {}
    for doc in yaml.safe_load_all(rendered):
        if not doc:
            continue
        md = doc["metadata"]
        args = [doc["kind"].lower() + "." + doc["apiVersion"].split("/")[0]
                if "/" in doc["apiVersion"] else doc["kind"].lower(), md["name"]]
        if md.get("namespace"):
            args += ["-n", md["namespace"]]
        live = get_json(clrk_on_kube.cluster, *args)
        out["/".join(args)] = live["metadata"]["resourceVersion"]
    return out


def test_install_then_install_again_changes_nothing(clrk_on_kube: ClrkOnKube) -> None:
    first, second = clrk_on_kube.installs
    created, _, _ = _summary(first)
    assert created > 10  # namespace, accounts, RBAC, Secret, PVC, Deployment, Services, ...
    assert "default WorkerPool was not applied" in first  # the API was not served yet
    assert _summary(second)[:2] == (1, 0)  # the WorkerPool, once clrk served
    before = _installed_versions(clrk_on_kube)
    again = clrk(*install_args(), kubeconfig=clrk_on_kube.admin).stdout
    created, updated, unchanged = _summary(again)
    assert (created, updated) == (0, 0) and unchanged == len(before), again
    assert _installed_versions(clrk_on_kube) == before  # nothing was written
    pool = get_json(clrk_on_kube.cluster, "workerpool", "default", "-n", "default")
    assert pool["spec"]["replicas"] == 1


def test_dry_run_on_the_installed_cluster_shows_no_diff(clrk_on_kube: ClrkOnKube) -> None:
    out = clrk(*install_args(), "--dry-run", kubeconfig=clrk_on_kube.admin).stdout
    assert out.strip().splitlines()[-1] == "no changes", out
    # A change shows as a diff, and is not applied.
    out = clrk(*install_args(), "--workers", "4", "--dry-run",
               kubeconfig=clrk_on_kube.admin).stdout
    assert "-  replicas: 1" in out and "+  replicas: 4" in out, out
    pool = get_json(clrk_on_kube.cluster, "workerpool", "default", "-n", "default")
    assert pool["spec"]["replicas"] == 1


@pytest.mark.parametrize("flags", [(), ("--rbac", "cluster-admin", "--storage-class", "fast",
                                         "--image-pull-secret", "regcred")])
def test_rendered_manifests_validate_and_the_cluster_accepts_them(
        clrk_on_kube: ClrkOnKube, flags: tuple[str, ...]) -> None:
    rendered = clrk(*install_args(), *flags, "-o", "yaml", kubeconfig=clrk_on_kube.admin)
    docs: list[dict[str, Any]] = [d for d in yaml.safe_load_all(rendered.stdout) if d]
    for doc in docs:
        if doc["apiVersion"].startswith("clrk.apoxy.dev/"):
            continue  # not a Kubernetes schema: accepted by clrk's own API below
        kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)
    # The real kube-apiserver (and the aggregated clrk API for the WorkerPool) accept every
    # object: a server-side dry run admits each one without writing anything.
    for doc in docs:
        r = clrk_on_kube.cluster.kubectl("apply", "--server-side", "--dry-run=server",
                                         "--force-conflicts", "--field-manager=clrk",
                                         "-f", "-", input=json.dumps(doc))
        assert "serverside-applied" in r.stdout, r


def test_upgrade_updates_the_deployment_and_keeps_the_worker_count(
        clrk_on_kube: ClrkOnKube) -> None:
    cluster, admin = clrk_on_kube.cluster, clrk_on_kube.admin
    cluster.kubectl("patch", "workerpool", "default", "-n", "default", "--type=merge",
                    "-p", '{"spec":{"replicas":3}}')
    generation = get_json(cluster, "deployment", DEPLOYMENT, "-n", NAMESPACE
                          )["metadata"]["generation"]
    refused = clrk("upgrade", "--yes", "--version", "0.0.1", kubeconfig=admin, check=False)
    assert refused.returncode != 0 and "--allow-downgrade" in refused.stderr, refused
    new_image = CONTROLLER_IMAGE.rsplit(":", 1)[0] + ":v0.1.1"
    upgraded = clrk("upgrade", "--yes", "--skip-wait", "--controller-image", new_image,
                    kubeconfig=admin)
    assert f"clrk v{__version__} upgraded in namespace {NAMESPACE}" in upgraded.stdout
    deploy = get_json(cluster, "deployment", DEPLOYMENT, "-n", NAMESPACE)
    assert deploy["metadata"]["generation"] == generation + 1
    assert deploy["spec"]["template"]["spec"]["containers"][0]["image"] == new_image
    pool = get_json(cluster, "workerpool", "default", "-n", "default")
    assert pool["spec"]["replicas"] == 3  # kept: no --workers given
    # Once the rollout is reported done, upgrade's wait passes; running it again is a no-op.
    report_rollout(cluster)
    again = clrk("upgrade", "--yes", "--controller-image", new_image, kubeconfig=admin)
    assert _summary(again.stdout)[:2] == (0, 0), again.stdout
