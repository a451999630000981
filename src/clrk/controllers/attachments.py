"""Route and policy status: does each gateway take the route, does each policy's target
exist, and does everything else they name (Backends, Secrets and keys) exist.

Without it a route whose gateway is missing, or a CredentialInjectionPolicy whose Secret
is, is stored and does nothing, and nobody is told. One reconcile covers a whole
namespace (key ``(namespace, "")``): every route and policy there is judged against the
gateways, routes, Backends and Secrets there, so a change to any of them is one event.
Conditions that turn False are also told as Warning Events on the object.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from lightkube import AsyncClient
from lightkube.types import PatchType

from clrk.api.attachment import CONTROLLER_NAME
from clrk.api.backend import Backend
from clrk.api.base import Resource
from clrk.api.core import Secret
from clrk.api.gateway import EgressGateway
from clrk.api.policies import (
    CredentialInjectionPolicy,
    EgressDenyPolicy,
    FallbackRoutingPolicy,
    LoggingPolicy,
    RateLimitPolicy,
)
from clrk.api.routes import AIProviderRoute, EgressL4Route, MCPRoute
from clrk.client import resource_class, to_dict
from clrk.controllers import events
from clrk.controllers.conditions import newly_false, set_condition
from clrk.controllers.runtime import Controller, Key, Watch

Obj = dict[str, Any]
ROUTES: tuple[type[Resource], ...] = (AIProviderRoute, MCPRoute, EgressL4Route)
POLICIES: tuple[type[Resource], ...] = (CredentialInjectionPolicy, RateLimitPolicy,
                                        EgressDenyPolicy, LoggingPolicy, FallbackRoutingPolicy)
# What a policy may attach to.
TARGETS: tuple[type[Resource], ...] = (EgressGateway, *ROUTES, Backend)


@dataclass
class Namespace:
    """The objects of one namespace that routes and policies may name, by kind and name."""

    objects: dict[str, dict[str, Obj]]

    def get(self, kind: str, name: str) -> Obj | None:
        return self.objects.get(kind, {}).get(name)


@dataclass(frozen=True)
class Verdict:
    status: bool
    reason: str
    message: str


def _accepted_by_gateway(ns: str, ref: Obj, seen: Namespace) -> Verdict:
    kind = ref.get("kind") or "EgressGateway"
    name = ref.get("name", "")
    if kind != "EgressGateway":
        return Verdict(False, "UnsupportedValue",
                       f"parentRefs kind {kind} is not supported: routes attach to an "
                       "EgressGateway")
    gateway = seen.get(kind, name)
    if gateway is None:
        return Verdict(False, "NoMatchingParent", f"EgressGateway {ns}/{name} does not exist")
    section = ref.get("sectionName")
    listeners = [li.get("name") for li in (gateway.get("spec") or {}).get("listeners") or []]
    if section and section not in listeners:
        return Verdict(False, "NoMatchingParent",
                       f"EgressGateway {ns}/{name} has no listener named {section}")
    return Verdict(True, "Accepted", f"attached to EgressGateway {ns}/{name}")


def _route_refs(route: Obj, seen: Namespace) -> Verdict:
    missing = sorted({b.get("name", "") for rule in (route.get("spec") or {}).get("rules") or []
                      for b in rule.get("backendRefs") or []
                      if seen.get("Backend", b.get("name", "")) is None})
    if missing:
        return Verdict(False, "BackendNotFound",
                       f"Backend {', '.join(missing)} does not exist")
    return Verdict(True, "ResolvedRefs", "every reference resolves")


def _policy_target(ns: str, ref: Obj, seen: Namespace) -> Verdict:
    kind = ref.get("kind") or "EgressGateway"
    name = ref.get("name", "")
    if kind not in {t.kind_info.kind for t in TARGETS}:
        return Verdict(False, "Invalid", f"a policy cannot attach to kind {kind}: it attaches "
                       "to an EgressGateway, a route or a Backend")
    if seen.get(kind, name) is None:
        return Verdict(False, "TargetNotFound", f"{kind} {ns}/{name} does not exist")
    return Verdict(True, "Accepted", f"attached to {kind} {ns}/{name}")


def _secret_key(secret: Obj, key: str) -> bytes | None:
    data = secret.get("data") or {}
    if key in data:
        return base64.b64decode(data[key])
    string = (secret.get("stringData") or {}).get(key)
    return None if string is None else str(string).encode()


def _policy_refs(policy: Obj, seen: Namespace) -> Verdict:
    if policy.get("kind") != "CredentialInjectionPolicy":
        return Verdict(True, "ResolvedRefs", "every reference resolves")
    spec = policy.get("spec") or {}
    name = (spec.get("secretRef") or {}).get("name", "")
    key = spec.get("secretKey", "")
    secret = seen.get("Secret", name)
    if secret is None:
        return Verdict(False, "SecretNotFound", f"Secret {name} does not exist")
    if not _secret_key(secret, key):
        return Verdict(False, "SecretKeyNotFound", f"Secret {name} has no key {key} "
                       "(or it is empty)")
    return Verdict(True, "ResolvedRefs", f"Secret {name} has key {key}")


def _conditions(old: list[Obj], accepted: Verdict, refs: Verdict,
                generation: int | None) -> list[Obj]:
    conds = set_condition(old, "Accepted", accepted.status, accepted.reason,
                          accepted.message, generation)
    return set_condition(conds, "ResolvedRefs", refs.status, refs.reason, refs.message,
                         generation)


Judge = Callable[[Obj], tuple[Verdict, Verdict, int | None]]


def _entries(old: Obj, field: str, ref_field: str, refs: list[Obj], judge: Judge) -> list[Obj]:
    previous = {_ref_key(e.get(ref_field) or {}): e for e in old.get(field) or []}
    out = []
    for ref in refs:
        accepted, resolved, generation = judge(ref)
        before = previous.get(_ref_key(ref), {}).get("conditions") or []
        out.append({ref_field: ref, "controllerName": CONTROLLER_NAME,
                    "conditions": _conditions(before, accepted, resolved, generation)})
    return out


def _ref_key(ref: Obj) -> tuple[str, str, str]:
    return (ref.get("kind") or "EgressGateway", ref.get("name", ""), ref.get("sectionName", ""))


def route_status(route: Obj, seen: Namespace) -> Obj:
    """The route's status.parents[], one per spec.parentRefs entry."""
    ns = route["metadata"].get("namespace", "")
    gen = route["metadata"].get("generation")
    resolved = _route_refs(route, seen)
    parents = _entries(route.get("status") or {}, "parents", "parentRef",
                       (route.get("spec") or {}).get("parentRefs") or [],
                       lambda ref: (_accepted_by_gateway(ns, ref, seen), resolved, gen))
    return {"observedGeneration": gen, "parents": parents}


def policy_status(policy: Obj, seen: Namespace) -> Obj:
    """The policy's status.ancestors[], one per targetRef/parentRefs entry."""
    ns = policy["metadata"].get("namespace", "")
    gen = policy["metadata"].get("generation")
    spec = policy.get("spec") or {}
    refs = list(spec.get("parentRefs") or []) + ([spec["targetRef"]] if spec.get("targetRef")
                                                  else [])
    resolved = _policy_refs(policy, seen)
    ancestors = _entries(policy.get("status") or {}, "ancestors", "ancestorRef", refs,
                         lambda ref: (_policy_target(ns, ref, seen), resolved, gen))
    return {"observedGeneration": gen, "ancestors": ancestors}


def _all_conditions(status: Obj, field: str) -> list[Obj]:
    return [c for e in status.get(field) or [] for c in e.get("conditions") or []]


def attachment_controller(client: AsyncClient, concurrency: int) -> Controller:
    """Status of every route and policy, one namespace per reconcile."""
    kinds: tuple[type[Resource], ...] = (*ROUTES, *POLICIES, EgressGateway, Backend, Secret)

    async def by_namespace(obj: Any) -> Iterable[Key]:
        return [(obj.metadata.namespace or "", "")]

    async def reconcile(key: Key) -> float | None:
        ns = key[0]
        objects: dict[str, dict[str, Obj]] = {}
        for cls in kinds:
            res = resource_class(cls)
            objects[cls.kind_info.kind] = {
                o["metadata"]["name"]: o for o in
                [to_dict(x) async for x in client.list(res, namespace=ns)]}
        seen = Namespace(objects)
        for cls in (*ROUTES, *POLICIES):
            field = "parents" if cls in ROUTES else "ancestors"
            judge = route_status if cls in ROUTES else policy_status
            for name, obj in objects[cls.kind_info.kind].items():
                if obj["metadata"].get("deletionTimestamp"):
                    continue
                old = obj.get("status") or {}
                new = judge(obj, seen)
                if new == old:
                    continue
                await client.patch(resource_class(cls).Status, name, {"status": new},
                                   namespace=ns, patch_type=PatchType.MERGE)
                for cond in newly_false(_all_conditions(old, field),
                                        _all_conditions(new, field)):
                    await events.emit(client, obj, cond["reason"], cond["message"], "Warning")
        return None

    return Controller(name="attachments", primary=AIProviderRoute, reconcile=reconcile,
                      concurrency=concurrency, primary_mapper=by_namespace,
                      secondary=[Watch(k, by_namespace) for k in kinds
                                 if k is not AIProviderRoute])


