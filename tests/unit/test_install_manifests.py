"""`clrk install` without a cluster: what it renders validates against the Kubernetes 1.32
JSON schemas, each flag lands where it should, Secret values never reach a diff, and a fake
API server shows that a second run is a no-op and an upgrade keeps the worker count."""

from __future__ import annotations

import base64
import copy
import hashlib
from collections.abc import Iterator
from typing import Any

import httpx
import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import typer
import yaml
from lightkube import ApiError
from typer.testing import CliRunner

from clrk import __version__
from clrk.api.validation import admit
from clrk.api.workerpool import WorkerPool
from clrk.cli import install as install_cli
from clrk.install import InstallError
from clrk.install.apply import plan
from clrk.install.diff import comparable, redact, unified
from clrk.install.manifests import documents, render, render_all, render_workerpool, to_yaml
from clrk.install.options import InstallOptions, ServingCert
from clrk.install.tls import generate_serving, serving_for, usable
from clrk.install.upgrade import check_version, is_downgrade, read_installed, storage_class_for
from clrk.install.wait import apiservice_problem, deployment_problem, wait_ready
from clrk.telemetry.client import TelemetryError, TelemetryStore
from clrk.telemetry.store import check_server_url, redacted
from tests.kube_cluster import free_port

K8S = "1.32"
SERVING = generate_serving("clrk")
ARGS = ["controller-manager", "--data-dir=/var/lib/clrk", "--bind-address=0.0.0.0",
        "--secure-port=8443", "--ingress-port=8080", "--tls-cert-dir=/etc/clrk/tls",
        "--leader-elect", "--leader-election-namespace=clrk",
        f"--worker-image=ghcr.io/apoxy-dev/clrk-worker:v{__version__}"]
# The kinds kubernetes-validate has no schema for, and why: not Kubernetes' own.
NOT_KUBERNETES = {("cert-manager.io/v1", "Issuer"), ("cert-manager.io/v1", "Certificate"),
                  ("clrk.apoxy.dev/v1alpha1", "WorkerPool")}


def opts(**kw: Any) -> InstallOptions:
    kw.setdefault("serving", SERVING if kw.get("tls", "self-signed") == "self-signed" else None)
    return InstallOptions(**kw)


def docs(options: InstallOptions) -> list[dict[str, Any]]:
    return documents(render_all(options))


def find(objs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    hits = [d for d in objs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(hits) == 1, f"{kind}/{name}: {len(hits)} found"
    return hits[0]


def names(objs: list[dict[str, Any]], kind: str) -> set[str]:
    return {d["metadata"]["name"] for d in objs if d["kind"] == kind}


def validate(doc: dict[str, Any]) -> None:
    """Kubernetes' schema (strict: unknown fields fail), or for the kinds it has none for,
    that this is the only reason; clrk's own kinds go through clrk's admission."""
    try:
        kubernetes_validate.validate(doc, K8S, strict=True)
    except kubernetes_validate.SchemaNotFoundError:
        assert (doc["apiVersion"], doc["kind"]) in NOT_KUBERNETES, doc["kind"]
        if doc["kind"] == "WorkerPool":
            WorkerPool.model_validate(doc)
            admit(WorkerPool, doc, "Strict")


VARIANTS: dict[str, dict[str, Any]] = {
    "default": {},
    "cluster-admin": {"rbac": "cluster-admin"},
    "cert-manager": {"tls": "cert-manager"},
    "everything": {"image_pull_secret": "regcred", "storage_class": "fast-ssd", "workers": 3,
                   "namespace": "clrk", "controller_image": "r.example/cm:1",
                   "worker_image": "r.example/w:1"},
}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_every_object_validates_against_kubernetes_schemas(variant: str) -> None:
    rendered = docs(opts(**VARIANTS[variant]))
    assert len(rendered) > 15
    for doc in rendered:
        validate(doc)


def test_every_object_carries_the_labels() -> None:
    for doc in docs(opts()):
        labels = doc["metadata"]["labels"]
        assert labels["app.kubernetes.io/name"] == "clrk", doc["kind"]
        assert labels["app.kubernetes.io/version"] == __version__
        assert labels["app.kubernetes.io/managed-by"] == "clrk"


def test_apply_order() -> None:
    rendered = documents(render(opts()))
    kinds = [d["kind"] for d in rendered]
    assert kinds[0] == "Namespace" and kinds[-1] == "APIService"
    assert kinds.index("Secret") < kinds.index("Deployment")
    assert kinds.index("PersistentVolumeClaim") < kinds.index("Deployment")
    assert kinds.index("Deployment") < kinds.index("Service")
    role = [d["metadata"]["name"] for d in rendered if d["kind"] == "ClusterRole"]
    bound = [d["roleRef"]["name"] for d in rendered if d["kind"] == "ClusterRoleBinding"]
    for name in set(role) & set(bound):
        assert kinds.index("ClusterRole") <= rendered.index(
            next(d for d in rendered if d["kind"] == "ClusterRoleBinding"
                 and d["roleRef"]["name"] == name))
    assert "WorkerPool" not in kinds  # applied once the APIService is available


def test_output_yaml_command_parses_into_the_rendered_objects() -> None:
    app = typer.Typer()
    app.command()(install_cli.install)
    result = CliRunner().invoke(app, ["-o", "yaml", "--workers", "2",
                                      "--image-pull-secret", "regcred"])
    assert result.exit_code == 0, result.output
    printed = list(yaml.safe_load_all(result.stdout))
    # The serving certificate is made afresh for -o yaml; everything else is the same.
    secret = find(printed, "Secret", "clrk-apiserver-tls")
    serving = ServingCert(*(base64.b64decode(secret["data"][k])
                            for k in ("ca.crt", "tls.crt", "tls.key")))
    assert usable(serving, "clrk")
    expected = docs(InstallOptions(workers=2, image_pull_secret="regcred", serving=serving))
    assert printed == expected
    for doc in printed:
        validate(doc)


def test_to_yaml_round_trips() -> None:
    objects = render_all(opts(tls="cert-manager"))
    assert list(yaml.safe_load_all(to_yaml(objects))) == documents(objects)


def test_output_format_other_than_yaml_is_refused() -> None:
    app = typer.Typer()
    app.command()(install_cli.install)
    result = CliRunner().invoke(app, ["-o", "json"])
    assert result.exit_code != 0
    assert "use yaml" in str(result.exception)


def _rules(doc: dict[str, Any]) -> list[tuple[tuple[str, ...], tuple[str, ...], frozenset[str]]]:
    return [(tuple(r.get("apiGroups", ())), tuple(r.get("resources", ())), frozenset(r["verbs"]))
            for r in doc["rules"]]


def test_rbac_scoped() -> None:
    rendered = docs(opts())
    cm = find(rendered, "ClusterRole", "clrk-controller-manager")
    rules = _rules(cm)
    assert (("clrk.apoxy.dev",), ("*",), frozenset({"*"})) in rules
    assert (("",), ("namespaces",), frozenset({"get", "list", "watch"})) in rules
    assert (("apps",), ("deployments",), frozenset(
        {"get", "list", "watch", "create", "update", "patch", "delete"})) in rules
    secrets = next(v for g, r, v in rules if r == ("secrets",))
    assert "delete" not in secrets and "update" not in secrets
    binding = find(rendered, "ClusterRoleBinding", "clrk-controller-manager")
    assert binding["roleRef"]["name"] == "clrk-controller-manager"
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "clrk-controller-manager",
                                    "namespace": "clrk"}]
    lease = find(rendered, "Role", "clrk-leader-election")
    assert lease["metadata"]["namespace"] == "clrk"
    assert _rules(lease)[0][:2] == (("coordination.k8s.io",), ("leases",))
    assert find(rendered, "RoleBinding", "clrk-leader-election")["roleRef"]["kind"] == "Role"
    assert not [d for d in rendered if d.get("roleRef", {}).get("name") == "cluster-admin"]


def test_rbac_cluster_admin() -> None:
    rendered = docs(opts(rbac="cluster-admin"))
    assert "clrk-controller-manager" not in names(rendered, "ClusterRole")
    assert "clrk-leader-election" not in names(rendered, "Role")
    admin = [d for d in rendered if d.get("roleRef", {}).get("name") == "cluster-admin"]
    assert len(admin) == 1
    assert admin[0]["kind"] == "ClusterRoleBinding"
    assert admin[0]["subjects"][0]["name"] == "clrk-controller-manager"


@pytest.mark.parametrize("rbac", ["scoped", "cluster-admin"])
def test_rbac_always(rbac: str) -> None:
    rendered = docs(opts(rbac=rbac))
    delegator = find(rendered, "ClusterRoleBinding", "clrk:system:auth-delegator")
    assert delegator["roleRef"] == {"kind": "ClusterRole", "name": "system:auth-delegator",
                                    "apiGroup": "rbac.authorization.k8s.io"}
    reader = find(rendered, "RoleBinding", "clrk:extension-apiserver-authentication-reader")
    assert reader["metadata"]["namespace"] == "kube-system"
    assert reader["roleRef"]["name"] == "extension-apiserver-authentication-reader"
    worker = find(rendered, "ClusterRoleBinding", "clrk-worker")
    assert worker["subjects"][0]["name"] == "clrk-worker"
    for role in ("view", "edit", "admin"):
        cr = find(rendered, "ClusterRole", f"clrk:{role}")
        assert cr["metadata"]["labels"][f"rbac.authorization.k8s.io/aggregate-to-{role}"] == "true"


def test_user_roles() -> None:
    rendered = docs(opts())
    view = _rules(find(rendered, "ClusterRole", "clrk:view"))
    subresources = {r for _, res, _ in view for r in res if "/" in r}
    assert subresources == {"taskagents/logs", "daemonagents/logs", "*/traces", "*/usage"}
    assert all(v <= {"get", "list", "watch"} for _, _, v in view)
    everything = next(res for _, res, v in view if "list" in v)
    assert "taskagents" in everything and "*" not in everything  # no subresource via "*"
    edit = _rules(find(rendered, "ClusterRole", "clrk:edit"))
    assert (("clrk.apoxy.dev",), ("taskagents/invoke",), frozenset({"create"})) in edit
    assert any({"create", "update", "patch", "delete", "deletecollection"} <= v
               for _, _, v in edit)
    assert find(rendered, "ClusterRole", "clrk:admin")["rules"] == \
        find(rendered, "ClusterRole", "clrk:edit")["rules"]


def test_self_signed_tls() -> None:
    rendered = docs(opts())
    secret = find(rendered, "Secret", "clrk-apiserver-tls")
    assert secret["type"] == "kubernetes.io/tls"
    assert base64.b64decode(secret["data"]["tls.crt"]) == SERVING.cert_pem
    assert base64.b64decode(secret["data"]["ca.crt"]) == SERVING.ca_pem
    svc = find(rendered, "APIService", "v1alpha1.clrk.apoxy.dev")
    assert base64.b64decode(svc["spec"]["caBundle"]) == SERVING.ca_pem
    assert svc["spec"] == {"caBundle": svc["spec"]["caBundle"], "group": "clrk.apoxy.dev",
                           "version": "v1alpha1", "groupPriorityMinimum": 1000,
                           "versionPriority": 15,
                           "service": {"namespace": "clrk", "name": "clrk-apiserver",
                                       "port": 443}}
    template = find(rendered, "Deployment", "clrk-controller-manager")["spec"]["template"]
    assert template["metadata"]["annotations"]["clrk.apoxy.dev/tls-sha256"] == \
        hashlib.sha256(SERVING.cert_pem).hexdigest()
    assert not [d for d in rendered if d["kind"] in ("Issuer", "Certificate")]


def test_self_signed_without_material_is_an_error() -> None:
    with pytest.raises(InstallError):
        render(InstallOptions())


def test_serving_certificate_names() -> None:
    assert usable(SERVING, "clrk")
    assert not usable(SERVING, "elsewhere")  # names the Service in namespace clrk only
    other = generate_serving("clrk")
    assert not usable(ServingCert(SERVING.ca_pem, other.cert_pem, other.key_pem), "clrk")


def test_cert_manager_tls() -> None:
    rendered = docs(opts(tls="cert-manager"))
    assert "clrk-apiserver-tls" not in names(rendered, "Secret")
    issuer = find(rendered, "Issuer", "clrk-selfsigned")
    assert issuer["spec"] == {"selfSigned": {}}
    cert = find(rendered, "Certificate", "clrk-apiserver")
    assert cert["spec"]["secretName"] == "clrk-apiserver-tls"
    assert cert["spec"]["issuerRef"]["name"] == "clrk-selfsigned"
    assert "clrk-apiserver.clrk.svc" in cert["spec"]["dnsNames"]
    svc = find(rendered, "APIService", "v1alpha1.clrk.apoxy.dev")
    assert svc["metadata"]["annotations"] == {
        "cert-manager.io/inject-ca-from": "clrk/clrk-apiserver"}
    assert "caBundle" not in svc["spec"]


def test_storage_class_and_pull_secret() -> None:
    rendered = docs(opts(storage_class="fast-ssd", image_pull_secret="regcred"))
    pvc = find(rendered, "PersistentVolumeClaim", "clrk-data")
    assert pvc["spec"] == {"accessModes": ["ReadWriteOnce"], "storageClassName": "fast-ssd",
                           "resources": {"requests": {"storage": "10Gi"}}}
    pod = find(rendered, "Deployment", "clrk-controller-manager")["spec"]["template"]["spec"]
    assert pod["imagePullSecrets"] == [{"name": "regcred"}]
    assert find(rendered, "ServiceAccount", "clrk-worker")["imagePullSecrets"] == \
        [{"name": "regcred"}]
    plain = docs(opts())
    assert "storageClassName" not in find(plain, "PersistentVolumeClaim", "clrk-data")["spec"]
    assert "imagePullSecrets" not in \
        find(plain, "Deployment", "clrk-controller-manager")["spec"]["template"]["spec"]


def test_deployment() -> None:
    dep = find(docs(opts()), "Deployment", "clrk-controller-manager")
    spec = dep["spec"]
    assert spec["replicas"] == 1 and spec["strategy"] == {"type": "Recreate"}
    selector = {"app.kubernetes.io/name": "clrk", "app.kubernetes.io/component":
                "controller-manager"}
    assert spec["selector"] == {"matchLabels": selector}
    assert selector.items() <= spec["template"]["metadata"]["labels"].items()
    pod = spec["template"]["spec"]
    assert pod["serviceAccountName"] == "clrk-controller-manager"
    assert pod["terminationGracePeriodSeconds"] == 30
    (c,) = pod["containers"]
    assert c["name"] == "controller-manager"
    assert c["image"] == f"ghcr.io/apoxy-dev/clrk-controller-manager:v{__version__}"
    assert c["args"] == ARGS
    assert c["env"] == [
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath":
                                                             "metadata.namespace"}}}]
    assert {(p["name"], p["containerPort"]) for p in c["ports"]} == {("https", 8443),
                                                                      ("ingress", 8080)}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": 8443,
                                              "scheme": "HTTPS"}
    assert c["livenessProbe"]["httpGet"]["path"] == "/livez"
    assert c["resources"] == {"requests": {"cpu": "100m", "memory": "256Mi"},
                              "limits": {"memory": "1Gi"}}
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    assert mounts["/etc/clrk/tls"]["readOnly"] is True
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes[mounts["/var/lib/clrk"]["name"]]["persistentVolumeClaim"] == \
        {"claimName": "clrk-data"}
    assert volumes[mounts["/etc/clrk/tls"]["name"]]["secret"] == \
        {"secretName": "clrk-apiserver-tls"}
    other = find(docs(opts(namespace="other", serving=generate_serving("other"))),
                 "Deployment", "clrk-controller-manager")
    assert "--leader-election-namespace=other" in \
        other["spec"]["template"]["spec"]["containers"][0]["args"]


def test_services() -> None:
    rendered = docs(opts())
    api = find(rendered, "Service", "clrk-apiserver")["spec"]
    ingress = find(rendered, "Service", "clrk-ingress")["spec"]
    assert api["ports"] == [{"name": "https", "port": 443, "targetPort": 8443,
                             "protocol": "TCP"}]
    assert ingress["ports"] == [{"name": "http", "port": 80, "targetPort": 8080,
                                 "protocol": "TCP"}]
    dep = find(rendered, "Deployment", "clrk-controller-manager")
    assert api["selector"] == ingress["selector"] == dep["spec"]["selector"]["matchLabels"]


def test_workerpool() -> None:
    pool = documents([render_workerpool(opts(workers=4, worker_image="r.example/w:2"))])[0]
    assert pool["apiVersion"] == "clrk.apoxy.dev/v1alpha1"
    assert pool["metadata"]["namespace"] == "default" and pool["metadata"]["name"] == "default"
    # Only what clrk sets: defaults such as maxExecutionsPerWorker stay another manager's.
    assert pool["spec"] == {"replicas": 4, "template": {"image": "r.example/w:2"}}


# Diffs -------------------------------------------------------------------------------------

def _secret(data: dict[str, bytes], rv: str = "1") -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": "s", "namespace": "clrk", "resourceVersion": rv, "uid": "u",
                         "creationTimestamp": "2026-01-01T00:00:00Z",
                         "managedFields": [{"manager": "clrk"}]},
            "data": {k: base64.b64encode(v).decode() for k, v in data.items()}}


def test_secret_values_never_appear_in_a_diff() -> None:
    old_value, new_value = b"hunter2-old-secret", b"correct horse battery staple"
    live = _secret({"key": old_value, "same": b"unchanged-secret"})
    desired = _secret({"key": new_value, "same": b"unchanged-secret"}, rv="2")
    text = unified(live, desired, "secret/clrk/s")
    assert text
    for value in (old_value, new_value, b"unchanged-secret"):
        assert value.decode() not in text
        assert base64.b64encode(value).decode() not in text
    assert f"<{len(new_value)} bytes, sha256 {hashlib.sha256(new_value).hexdigest()[:8]}>" \
        in text
    assert redact(base64.b64encode(old_value).decode()) in text
    created = unified(None, desired, "secret/clrk/s")
    assert new_value.decode() not in created and base64.b64encode(new_value).decode() \
        not in created
    string_data = dict(desired, stringData={"token": "plain-text-token"})
    assert "plain-text-token" not in unified(None, string_data, "secret/clrk/s")


def test_server_fields_do_not_count() -> None:
    live = _secret({"k": b"v"}, rv="1")
    again = _secret({"k": b"v"}, rv="7")
    again["metadata"].update(generation=3, uid="other", managedFields=[])
    again["status"] = {"anything": True}
    assert comparable(live) == comparable(again)
    assert unified(live, again, "secret/clrk/s") == ""


# Versions ----------------------------------------------------------------------------------

def test_downgrade_refused() -> None:
    with pytest.raises(InstallError, match=r"older than the installed 0\.2\.0"):
        check_version("0.2.0", "0.1.9")
    with pytest.raises(InstallError):
        check_version("1.0.0", "1.0.0rc1")
    check_version("0.2.0", "0.1.9", allow_downgrade=True)


def test_same_and_newer_allowed() -> None:
    check_version("0.1.0", "0.1.0")
    check_version("0.1.0", "0.1.1")
    check_version("0.9.0", "0.10.0")  # not a string comparison
    check_version("1.0.0rc1", "1.0.0")
    assert is_downgrade("0.10.0", "0.9.0") and not is_downgrade("0.9.0", "0.10.0")


def test_unparseable_installed_version() -> None:
    with pytest.raises(InstallError, match="--allow-downgrade"):
        check_version("", "0.1.0")
    check_version("", "0.1.0", allow_downgrade=True)


# Against a fake API server -----------------------------------------------------------------

def _error(code: int, message: str = "not found") -> ApiError:
    reason = {404: "NotFound", 503: "ServiceUnavailable"}.get(code, "Error")
    return ApiError(request=httpx.Request("GET", "https://fake"), response=httpx.Response(
        code, json={"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": code,
                    "reason": reason, "message": message}))


def _fields(obj: Any) -> Any:
    """The fieldsV1 form of what a manager applied (lists as leaves: enough here)."""
    if isinstance(obj, dict):
        return {f"f:{k}": _fields(v) for k, v in obj.items()}
    return {}


def _merge(live: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(live)
    for k, v in patch.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) \
            else copy.deepcopy(v)
    return out


class FakeCluster:
    """Server-side apply in miniature: a merge of what was applied into what is there, the
    resourceVersion bumped only when the content changed, workerpools served only while
    ``serving`` is set."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str | None, str], dict[str, Any]] = {}
        self.serving = True
        self.version = 0
        self.writes = 0

    @staticmethod
    def _key(kind: str, namespace: str | None, name: str) -> tuple[str, str | None, str]:
        return kind, namespace, name

    def _kind(self, res: Any) -> str:
        return str(res._api_info.resource.kind)

    def _check_served(self, kind: str, namespace: str | None) -> None:
        if kind == "WorkerPool" and not self.serving:
            raise _error(503, "the server is currently unable to handle the request")
        if namespace and namespace not in ("default", "kube-system") and \
                self._key("Namespace", None, namespace) not in self.objects:
            raise _error(404, f'namespaces "{namespace}" not found')

    def get(self, res: Any, name: str, *, namespace: str | None = None) -> Any:
        kind = self._kind(res)
        if kind == "WorkerPool" and not self.serving:
            raise _error(503)
        key = self._key(kind, namespace if res._api_info.resource.kind != "Namespace"
                        else None, name)
        if key not in self.objects:
            raise _error(404)
        return res.from_dict(copy.deepcopy(self.objects[key]))

    def apply(self, obj: Any, *, field_manager: str | None = None, force: bool = False,
              dry_run: bool = False) -> Any:
        assert field_manager == "clrk" and force
        d = documents([obj])[0]
        kind, meta = d["kind"], d["metadata"]
        self._check_served(kind, meta.get("namespace"))
        key = self._key(kind, meta.get("namespace"), meta["name"])
        live = self.objects.get(key)
        merged = _merge(live or {}, d)
        merged["metadata"]["managedFields"] = [{
            "manager": "clrk", "operation": "Apply", "fieldsType": "FieldsV1",
            "fieldsV1": _fields({k: v for k, v in d.items() if k not in ("apiVersion", "kind")})}]
        if live is not None and comparable(merged) == comparable(live):
            merged = live
        else:
            rv = str(self.version + 1)
            merged["metadata"] = dict(merged["metadata"], resourceVersion=rv, uid=f"uid-{key}")
            if not dry_run:
                self.version += 1
                self.writes += 1
        if not dry_run:
            self.objects[key] = merged
        return type(obj).from_dict(copy.deepcopy(merged))

    def list(self, res: Any, *, namespace: str | None = None,
             labels: dict[str, Any] | None = None) -> Iterator[Any]:
        return iter(())

    def versions(self) -> dict[tuple[str, str | None, str], str]:
        return {k: v["metadata"]["resourceVersion"] for k, v in self.objects.items()}


def request(**kw: Any) -> install_cli.Request:
    base: dict[str, Any] = dict(
        namespace="clrk", version=__version__, controller_image=None, worker_image=None,
        image_pull_secret=None, clickhouse_secret=None, workers=1, storage_class=None,
        rbac="scoped",
        tls="self-signed", timeout=1, dry_run=False, output=None, yes=True, skip_wait=True)
    return install_cli.Request(**{**base, **kw})


def test_install_twice_changes_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    cluster = FakeCluster()
    install_cli.run(cluster, request())  # type: ignore[arg-type]
    first = capsys.readouterr().out
    count = len(render_all(opts()))
    assert f"clrk v{__version__} installed in namespace clrk: {count} created, 0 updated, " \
        "0 unchanged" in first
    before, writes = cluster.versions(), cluster.writes
    install_cli.run(cluster, request(dry_run=True))  # type: ignore[arg-type]
    assert capsys.readouterr().out == "no changes\n"
    install_cli.run(cluster, request())  # type: ignore[arg-type]
    assert f"0 created, 0 updated, {count} unchanged" in capsys.readouterr().out
    assert cluster.versions() == before and cluster.writes == writes  # the Secret was reused


def test_dry_run_shows_a_diff_and_applies_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    cluster = FakeCluster()
    install_cli.run(cluster, request())  # type: ignore[arg-type]
    capsys.readouterr()
    before = cluster.versions()
    install_cli.run(cluster, request(dry_run=True, controller_image="r.example/cm:2"))  # type: ignore[arg-type]
    out = capsys.readouterr().out
    assert "-        image: ghcr.io/apoxy-dev/clrk-controller-manager" in out
    assert "+        image: r.example/cm:2" in out
    assert "1 to update" in out and "nothing applied" in out
    assert cluster.versions() == before


def test_plan_on_an_empty_cluster_shows_objects_as_rendered() -> None:
    cluster = FakeCluster()
    cluster.serving = False
    changes = plan(cluster, render_all(opts()))  # type: ignore[arg-type]
    assert {c.action for c in changes} == {"create"}
    pool = changes[-1]
    assert pool.kind == "WorkerPool" and "+  replicas: 1" in pool.diff


def test_skip_wait_without_the_clrk_api(capsys: pytest.CaptureFixture[str]) -> None:
    cluster = FakeCluster()
    cluster.serving = False
    install_cli.run(cluster, request())  # type: ignore[arg-type]
    out = capsys.readouterr().out
    assert "the default WorkerPool was not applied" in out
    assert ("WorkerPool", "default", "default") not in cluster.objects


def test_upgrade_keeps_the_worker_count(capsys: pytest.CaptureFixture[str]) -> None:
    cluster = FakeCluster()
    install_cli.run(cluster, request(workers=1))  # type: ignore[arg-type]
    pool_key = ("WorkerPool", "default", "default")
    cluster.objects[pool_key]["spec"]["replicas"] = 5  # scaled by someone since
    install_cli.run(cluster, request(workers=None, version="0.1.1"), upgrade=True)  # type: ignore[arg-type]
    out = capsys.readouterr().out
    assert f"clrk v0.1.1 upgraded in namespace clrk (from v{__version__})" in out
    assert cluster.objects[pool_key]["spec"]["replicas"] == 5
    assert cluster.objects[pool_key]["spec"]["template"]["image"] == \
        "ghcr.io/apoxy-dev/clrk-worker:v0.1.1"
    dep = cluster.objects[("Deployment", "clrk", "clrk-controller-manager")]
    assert dep["metadata"]["labels"]["app.kubernetes.io/version"] == "0.1.1"
    assert dep["spec"]["template"]["spec"]["containers"][0]["image"] == \
        "ghcr.io/apoxy-dev/clrk-controller-manager:v0.1.1"
    install_cli.run(cluster, request(workers=0, version="0.1.1"), upgrade=True)  # type: ignore[arg-type]
    assert cluster.objects[pool_key]["spec"]["replicas"] == 0
    install_cli.run(cluster, request(workers=None, version="0.1.1"), upgrade=True)  # type: ignore[arg-type]
    assert cluster.objects[pool_key]["spec"]["replicas"] == 0  # scaled to zero stays there


def test_upgrade_refuses_a_downgrade_and_an_empty_cluster() -> None:
    cluster = FakeCluster()
    with pytest.raises(InstallError, match="clrk is not installed in namespace clrk: run "
                       "`clrk install`"):
        install_cli.run(cluster, request(), upgrade=True)  # type: ignore[arg-type]
    install_cli.run(cluster, request(version="0.2.0"))  # type: ignore[arg-type]
    with pytest.raises(InstallError, match=r"older than the installed 0\.2\.0"):
        install_cli.run(cluster, request(version="0.1.0"), upgrade=True)  # type: ignore[arg-type]
    with pytest.raises(InstallError, match="--allow-downgrade"):
        install_cli.run(cluster, request(version="0.1.0"))  # type: ignore[arg-type]
    install_cli.run(cluster, request(version="0.1.0"), upgrade=True,  # type: ignore[arg-type]
                    allow_downgrade=True)


def test_serving_certificate_is_read_back() -> None:
    cluster = FakeCluster()
    install_cli.run(cluster, request())  # type: ignore[arg-type]
    assert serving_for(cluster, "clrk") == serving_for(cluster, "clrk")  # type: ignore[arg-type]
    assert serving_for(cluster, "other") != serving_for(cluster, "other")  # type: ignore[arg-type]


# Waiting -----------------------------------------------------------------------------------

def _deployment(generation: int = 2, observed: int = 2, updated: int = 1,
                available: int = 1) -> dict[str, Any]:
    return {"metadata": {"generation": generation}, "spec": {"replicas": 1},
            "status": {"observedGeneration": observed, "replicas": 1,
                       "updatedReplicas": updated, "availableReplicas": available,
                       "conditions": [{"type": "Available", "status": "False",
                                       "reason": "MinimumReplicasUnavailable",
                                       "message": "Deployment does not have minimum "
                                       "availability."}]}}


def _apiservice(status: str, reason: str = "", message: str = "") -> dict[str, Any]:
    return {"status": {"conditions": [{"type": "Available", "status": status, "reason": reason,
                                       "message": message}]}}


def test_readiness_problems() -> None:
    assert deployment_problem(_deployment(), "clrk") is None
    assert "generation 3 not observed yet" in str(deployment_problem(_deployment(3, 2), "clrk"))
    not_available = str(deployment_problem(_deployment(available=0), "clrk"))
    assert "1/1 updated, 0/1 available" in not_available
    assert "MinimumReplicasUnavailable" in not_available
    assert "does not exist" in str(deployment_problem(None, "clrk"))
    assert apiservice_problem(_apiservice("True")) is None
    assert apiservice_problem(_apiservice("False", "FailedDiscoveryCheck", "no route")) == (
        "apiservice v1alpha1.clrk.apoxy.dev: Available=False "
        "(FailedDiscoveryCheck: no route)")


def test_wait_ready_times_out_saying_what_is_missing() -> None:
    cluster = FakeCluster()
    install_cli.run(cluster, request())  # type: ignore[arg-type]
    key = ("Deployment", "clrk", "clrk-controller-manager")
    cluster.objects[key]["status"] = _deployment(available=0)["status"]
    cluster.objects[key]["metadata"]["generation"] = 2
    cluster.objects[("APIService", None, "v1alpha1.clrk.apoxy.dev")]["status"] = \
        _apiservice("False", "MissingEndpoints", "endpoints for service/clrk-apiserver in "
                    '"clrk" have no addresses')["status"]
    now = [0.0]
    seen: list[str] = []

    def sleep(seconds: float) -> None:
        now[0] += seconds

    with pytest.raises(InstallError) as err:
        wait_ready(cluster, "clrk", 10, seen.append, clock=lambda: now[0],  # type: ignore[arg-type]
                   sleep=sleep)
    message = str(err.value)
    assert "not ready after 10s" in message
    assert "0/1 available" in message and "MinimumReplicasUnavailable" in message
    assert "Available=False (MissingEndpoints: endpoints for service/clrk-apiserver" in message
    assert len(seen) == 2  # each state reported once, not on every poll
    cluster.objects[key]["status"] = _deployment()["status"]
    cluster.objects[("APIService", None, "v1alpha1.clrk.apoxy.dev")]["status"] = \
        _apiservice("True")["status"]
    wait_ready(cluster, "clrk", 10, seen.append, clock=lambda: now[0],  # type: ignore[arg-type]
               sleep=sleep)


def test_upgrade_keeps_the_choices_made_at_install(capsys: pytest.CaptureFixture[str]) -> None:
    cluster = FakeCluster()
    install_cli.run(cluster, request(rbac="cluster-admin", tls="cert-manager",  # type: ignore[arg-type]
                                     image_pull_secret="regcred", storage_class="fast-ssd"))
    installed = read_installed(cluster, "clrk")  # type: ignore[arg-type]
    assert (installed.rbac, installed.tls, installed.image_pull_secret) == \
        ("cluster-admin", "cert-manager", "regcred")
    before = set(cluster.objects)
    install_cli.run(cluster, request(rbac=None, tls=None, workers=None,  # type: ignore[arg-type]
                                     version="0.1.1"), upgrade=True)
    assert set(cluster.objects) == before  # no scoped role, no self-signed Secret appeared
    pod = cluster.objects[("Deployment", "clrk", "clrk-controller-manager")]["spec"][
        "template"]["spec"]
    assert pod["imagePullSecrets"] == [{"name": "regcred"}]
    assert "0 created" in capsys.readouterr().out


def test_telemetry_to_a_clickhouse_server_from_a_secret() -> None:
    cluster = FakeCluster()
    install_cli.run(cluster, request())  # type: ignore[arg-type]
    with pytest.raises(InstallError, match="secret clrk/ch does not exist"):
        install_cli.run(cluster, request(clickhouse_secret="ch"))  # type: ignore[arg-type]
    cluster.objects[("Secret", "clrk", "ch")] = {
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "ch", "namespace": "clrk"},
        "data": {"URL": base64.b64encode(b"http://ch:8123").decode()}}
    with pytest.raises(InstallError, match="has no 'url' key \\(keys: URL\\)"):
        install_cli.run(cluster, request(clickhouse_secret="ch"))  # type: ignore[arg-type]
    cluster.objects[("Secret", "clrk", "ch")]["data"] = {
        "url": base64.b64encode(b"https://clrk:pw@ch.example:8443/telemetry").decode()}
    install_cli.run(cluster, request(clickhouse_secret="ch"))  # type: ignore[arg-type]

    def env() -> list[dict[str, Any]]:
        pod = cluster.objects[("Deployment", "clrk", "clrk-controller-manager")]["spec"][
            "template"]["spec"]
        return list(pod["containers"][0]["env"])

    assert {"name": "CLRK_CLICKHOUSE_URL", "valueFrom": {"secretKeyRef": {
        "name": "ch", "key": "url"}}} in env()
    assert read_installed(cluster, "clrk").clickhouse_secret == "ch"  # type: ignore[arg-type]
    install_cli.run(cluster, request(workers=None, rbac=None, tls=None),  # type: ignore[arg-type]
                    upgrade=True)
    assert any(e["name"] == "CLRK_CLICKHOUSE_URL" for e in env())  # kept by the upgrade


def test_clickhouse_urls_are_checked_and_never_shown_with_their_password() -> None:
    assert check_server_url("https://u:pw@ch.example:8443/db") == \
        "https://u:pw@ch.example:8443/db"
    for bad, why in (("ftp://u:pw@h/db", "the scheme must be http or https"),
                     ("http://u:pw@h:port/db", "the port is not a number"),
                     ("http:///db", "no host"),
                     ("http://h/db?password=x", "settings go in the server's configuration")):
        with pytest.raises(ValueError, match=why) as err:
            check_server_url(bad)
        assert "pw" not in str(err.value)
    assert redacted("http://u:pw@h:8123/db") == "http://u:***@h:8123/db"
    assert redacted("chdb:///var/lib/clrk/telemetry") == "chdb:///var/lib/clrk/telemetry"


def test_an_unreachable_clickhouse_server_is_a_clear_error(tmp_path: Any) -> None:
    port = free_port()
    store = TelemetryStore(f"http://clrk:hunter2@127.0.0.1:{port}/telemetry")
    with pytest.raises(TelemetryError) as err:
        store.open()
    message = str(err.value)
    assert f"cannot open the telemetry store http://clrk:***@127.0.0.1:{port}/telemetry" \
        in message, message
    assert "hunter2" not in message


def test_the_state_claim_keeps_its_storage_class() -> None:
    cluster = FakeCluster()
    install_cli.run(cluster, request(storage_class="fast-ssd"))  # type: ignore[arg-type]
    assert storage_class_for(cluster, "clrk", None) == "fast-ssd"  # type: ignore[arg-type]
    with pytest.raises(InstallError, match="cannot change"):
        install_cli.run(cluster, request(storage_class="slow"))  # type: ignore[arg-type]
    before = cluster.versions()
    install_cli.run(cluster, request())  # type: ignore[arg-type]
    assert cluster.versions() == before


def test_a_default_storage_class_filled_in_by_the_cluster_is_not_claimed() -> None:
    cluster = FakeCluster()
    install_cli.run(cluster, request())  # type: ignore[arg-type]
    pvc = cluster.objects[("PersistentVolumeClaim", "clrk", "clrk-data")]
    pvc["spec"]["storageClassName"] = "standard"  # DefaultStorageClass admission, no owner
    assert storage_class_for(cluster, "clrk", None) is None  # type: ignore[arg-type]
    assert storage_class_for(cluster, "clrk", "standard") == "standard"  # type: ignore[arg-type]
