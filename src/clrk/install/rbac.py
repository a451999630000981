"""The RBAC objects `clrk install` renders, each rule with the reason it is there.

Kubernetes RBAC is the only thing standing between a ServiceAccount and the cluster, so the
scoped mode grants what the code of each component does and nothing else; every rule below
names the code path that needs it. ``--rbac cluster-admin`` exists for clusters where
narrowing is not wanted (a throwaway test cluster), not as the default.
"""

from __future__ import annotations

from typing import Any

from lightkube.models.meta_v1 import ObjectMeta
from lightkube.models.rbac_v1 import PolicyRule, RoleRef, Subject
from lightkube.resources.rbac_authorization_v1 import (
    ClusterRole,
    ClusterRoleBinding,
    Role,
    RoleBinding,
)

from clrk.api import kinds  # noqa: F401  (registers every kind)
from clrk.api.base import GROUP
from clrk.api.registry import all_kinds
from clrk.install.options import CONTROLLER, WORKER, InstallOptions, labels

RBAC_GROUP = "rbac.authorization.k8s.io"
LEADER_ELECTION = "clrk-leader-election"
AUTH_DELEGATOR = "clrk:system:auth-delegator"
AUTH_READER = "clrk:extension-apiserver-authentication-reader"
CLUSTER_ADMIN_BINDING = "clrk-controller-manager:cluster-admin"

READ = ["get", "list", "watch"]
WRITE = ["create", "update", "patch", "delete", "deletecollection"]


def clrk_resources() -> list[str]:
    """Every resource of the clrk.apoxy.dev group, by plural, without subresources (a rule
    naming ``*`` would match every subresource too: invoke, logs, heartbeat, take)."""
    return sorted(cls.kind_info.plural for cls in all_kinds() if cls.kind_info.group == GROUP)


def _meta(options: InstallOptions, name: str, namespace: str | None = None,
          extra: dict[str, str] | None = None) -> ObjectMeta:
    return ObjectMeta(name=name, namespace=namespace, labels={**labels(options), **(extra or {})})


def _sa(options: InstallOptions, name: str) -> Subject:
    return Subject(kind="ServiceAccount", name=name, namespace=options.namespace)


def _cluster_binding(options: InstallOptions, name: str, role: str,
                     account: str) -> ClusterRoleBinding:
    return ClusterRoleBinding(
        metadata=_meta(options, name),
        roleRef=RoleRef(apiGroup=RBAC_GROUP, kind="ClusterRole", name=role),
        subjects=[_sa(options, account)],
    )


def controller_manager_rules() -> list[PolicyRule]:
    """What the controller-manager pod does against kube-apiserver (``--rbac scoped``)."""
    return [
        # Every verb on every clrk kind and subresource: the controllers reach the clrk API
        # through kube-apiserver (which proxies to this very pod, and the pod's API server then
        # asks kube-apiserver with a SubjectAccessReview whether its own ServiceAccount may):
        # they read every kind, write revisions, Invocations and every status subresource.
        PolicyRule(apiGroups=[GROUP], resources=["*"], verbs=["*"]),
        # Secrets: the credentials the egress plane injects and the EgressGateway CAs are read
        # (and watched for rotation); the gateway CA controller creates a gateway's CA Secret
        # once, when it is missing (controllers/gateway_ca.py). Never updated or deleted.
        PolicyRule(apiGroups=[""], resources=["secrets"], verbs=[*READ, "create"]),
        # Namespaces: the clrk API serves the Namespace kind from kube-apiserver's namespaces
        # and the controllers skip objects of namespaces being deleted.
        PolicyRule(apiGroups=[""], resources=["namespaces"], verbs=READ),
        # Events: the controllers record what they did on the objects (core/v1 Events today,
        # events.k8s.io/v1 for the client-go style recorder), patched when they repeat.
        PolicyRule(apiGroups=[""], resources=["events"], verbs=["create", "patch", "update"]),
        PolicyRule(apiGroups=["events.k8s.io"], resources=["events"],
                   verbs=["create", "patch"]),
        # Deployments and Services: a WorkerPool becomes a worker Deployment and its Service.
        PolicyRule(apiGroups=["apps"], resources=["deployments"],
                   verbs=[*READ, "create", "update", "patch", "delete"]),
        PolicyRule(apiGroups=[""], resources=["services"],
                   verbs=[*READ, "create", "update", "patch", "delete"]),
        # ... with a ServiceAccount of its own, bound in the pool's namespace to the worker
        # ClusterRole (`bind` on that role only: the controller grants nothing else).
        PolicyRule(apiGroups=[""], resources=["serviceaccounts"],
                   verbs=[*READ, "create", "update", "patch", "delete"]),
        PolicyRule(apiGroups=[RBAC_GROUP], resources=["rolebindings"],
                   verbs=[*READ, "create", "update", "patch", "delete"]),
        PolicyRule(apiGroups=[RBAC_GROUP], resources=["clusterroles"], verbs=["bind"],
                   resourceNames=[WORKER]),
    ]


def leader_election_rules() -> list[PolicyRule]:
    """Leader election: only the Lease holder reconciles (controllers/leader.py), so two
    controller-manager pods during a rollout never both act. Only in the install namespace."""
    return [PolicyRule(apiGroups=["coordination.k8s.io"], resources=["leases"],
                       verbs=["get", "list", "watch", "create", "update", "patch"])]


def worker_rules() -> list[PolicyRule]:
    """What a worker pod does (worker/main.py and worker/telemetry.py)."""
    return [
        # Reads its WorkerPool and the agents, routes, gateways and policies it configures
        # sandboxes and the egress plane from (watched, so changes apply without restarts).
        PolicyRule(apiGroups=[GROUP], resources=clrk_resources(), verbs=READ),
        # Its reports: heartbeats to its pool, DaemonAgent runs and their output, the
        # connections a gateway saw, token usage and rate-limit windows shared by workers,
        # and the spans and logs agents export themselves (OTLP).
        PolicyRule(apiGroups=[GROUP], verbs=["create"], resources=[
            "workerpools/heartbeat", "daemonagents/runs", "daemonagents/logs",
            "egressgateways/connections", "ratelimitpolicies/take", "aiproviderroutes/usage",
            "taskagents/traces", "daemonagents/traces", "taskagents/logs"]),
        # What it reports in status: an image pulled for a revision (or why not, and the
        # pull's progress), and the state of the DaemonAgents it runs.
        PolicyRule(apiGroups=[GROUP], verbs=["patch"], resources=[
            "agentsandboxrevisions/status", "daemonagents/status"]),
        # Token budgets: the tokens a route has used today across every worker.
        PolicyRule(apiGroups=[GROUP], resources=["aiproviderroutes/usage"], verbs=["get"]),
        # The credentials it injects into upstream requests, and gateway CAs it terminates
        # TLS with; read only.
        PolicyRule(apiGroups=[""], resources=["secrets"], verbs=READ),
        # Events about sandboxes (image pulls, crashes) on the agents.
        PolicyRule(apiGroups=[""], resources=["events"], verbs=["create", "patch"]),
    ]


def view_rules() -> list[PolicyRule]:
    """Reading clrk objects and what the agents did (aggregated into ``view``)."""
    return [
        PolicyRule(apiGroups=[GROUP], resources=clrk_resources(), verbs=READ),
        # Output, traces and token usage are reads of an agent's or route's history.
        PolicyRule(apiGroups=[GROUP], verbs=["get"], resources=[
            "taskagents/logs", "daemonagents/logs", "*/traces", "*/usage"]),
    ]


def edit_rules() -> list[PolicyRule]:
    """Changing clrk objects and running TaskAgents (aggregated into ``edit`` and ``admin``)."""
    return [
        *view_rules(),
        PolicyRule(apiGroups=[GROUP], resources=clrk_resources(), verbs=WRITE),
        # Invoking runs an agent: an explicit grant, as `pods/exec` is.
        PolicyRule(apiGroups=[GROUP], resources=["taskagents/invoke"], verbs=["create"]),
    ]


def _aggregate(role: str) -> dict[str, str]:
    return {f"rbac.authorization.k8s.io/aggregate-to-{role}": "true"}


def render_rbac(options: InstallOptions) -> list[Any]:
    """ClusterRoles, Roles and their bindings, in apply order (roles before bindings)."""
    ns = options.namespace
    out: list[Any] = []
    if options.rbac == "scoped":
        out += [
            ClusterRole(metadata=_meta(options, CONTROLLER), rules=controller_manager_rules()),
            _cluster_binding(options, CONTROLLER, CONTROLLER, CONTROLLER),
            Role(metadata=_meta(options, LEADER_ELECTION, ns), rules=leader_election_rules()),
            RoleBinding(
                metadata=_meta(options, LEADER_ELECTION, ns),
                roleRef=RoleRef(apiGroup=RBAC_GROUP, kind="Role", name=LEADER_ELECTION),
                subjects=[_sa(options, CONTROLLER)],
            ),
        ]
    else:
        # A different name from the scoped binding: a binding's roleRef cannot be changed.
        out.append(_cluster_binding(options, CLUSTER_ADMIN_BINDING, "cluster-admin",
                                    CONTROLLER))
    out += [
        # An aggregated API server authenticates bearer tokens with TokenReview and
        # authorizes every request with SubjectAccessReview (controlplane/delegation.py).
        _cluster_binding(options, AUTH_DELEGATOR, "system:auth-delegator", CONTROLLER),
        # ... and reads the front-proxy CA and header names from
        # kube-system/extension-apiserver-authentication to trust kube-aggregator's requests.
        RoleBinding(
            metadata=_meta(options, AUTH_READER, "kube-system"),
            roleRef=RoleRef(apiGroup=RBAC_GROUP, kind="Role",
                            name="extension-apiserver-authentication-reader"),
            subjects=[_sa(options, CONTROLLER)],
        ),
        ClusterRole(metadata=_meta(options, WORKER), rules=worker_rules()),
        _cluster_binding(options, WORKER, WORKER, WORKER),
        ClusterRole(metadata=_meta(options, "clrk:view", extra=_aggregate("view")),
                    rules=view_rules()),
        ClusterRole(metadata=_meta(options, "clrk:edit", extra=_aggregate("edit")),
                    rules=edit_rules()),
        ClusterRole(metadata=_meta(options, "clrk:admin", extra=_aggregate("admin")),
                    rules=edit_rules()),
    ]
    return out
