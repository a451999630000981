"""The test cluster itself: a real etcd and kube-apiserver, RBAC, ServiceAccount
tokens, and binaries built once per version."""

from __future__ import annotations

import subprocess

import pytest

from tests.kube_cluster import ROOT, KubeCluster

pytestmark = pytest.mark.cluster


def test_the_cluster_serves_with_rbac_and_service_account_tokens(
        kube_cluster: KubeCluster) -> None:
    names = kube_cluster.kubectl("get", "ns", "-o", "name").stdout.split()
    assert {"namespace/default", "namespace/kube-system"} <= set(names)
    assert kube_cluster.kubectl("auth", "can-i", "*", "*").stdout.strip() == "yes"
    # A ServiceAccount's token (signed by kube-apiserver) authenticates, and RBAC decides.
    kube_cluster.kubectl("create", "serviceaccount", "probe", "-n", "default")
    token = kube_cluster.kubectl("create", "token", "probe", "-n", "default").stdout.strip()
    as_probe = kube_cluster.kubeconfig(token, "probe")
    who = kube_cluster.kubectl("auth", "whoami", "-o", "jsonpath={.status.userInfo.username}",
                               kubeconfig=as_probe).stdout
    assert who == "system:serviceaccount:default:probe"
    denied = kube_cluster.kubectl("get", "secrets", "-n", "default", kubeconfig=as_probe,
                                  check=False)
    assert denied.returncode != 0 and "forbidden" in denied.stderr.lower()
    # The aggregation layer is configured: kube-apiserver publishes the front-proxy CA.
    cm = kube_cluster.kubectl("get", "configmap", "-n", "kube-system",
                              "extension-apiserver-authentication", "-o",
                              "jsonpath={.data.requestheader-allowed-names}").stdout
    assert "front-proxy-client" in cm


def test_binaries_are_cached_by_version(kube_cluster: KubeCluster) -> None:
    out = subprocess.run(["bash", str(ROOT / "scripts" / "build-kube.sh")],
                         capture_output=True, text=True, check=True)
    assert "building" not in out.stderr  # a second session reuses the binaries
    assert (ROOT / "scripts" / "build-kube.sh").exists()
