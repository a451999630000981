"""Discovery documents: /api, /apis and the per-group-version resource lists."""

from __future__ import annotations

from typing import Any

from clrk.apiserver.handlers import Served, collection_deletable

VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]


def api_versions() -> dict[str, Any]:
    return {"kind": "APIVersions", "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0",
                                            "serverAddress": "127.0.0.1"}]}


def group_list(groups: dict[str, list[str]]) -> dict[str, Any]:
    return {"kind": "APIGroupList", "apiVersion": "v1",
            "groups": [group(g, versions) for g, versions in sorted(groups.items())]}


def group(name: str, versions: list[str]) -> dict[str, Any]:
    vs = [{"groupVersion": f"{name}/{v}", "version": v} for v in versions]
    return {"kind": "APIGroup", "apiVersion": "v1", "name": name, "versions": vs,
            "preferredVersion": vs[0]}


def resource_list(group_version: str, served: list[Served]) -> dict[str, Any]:
    resources: list[dict[str, Any]] = []
    for s in sorted(served, key=lambda s: s.resource):
        info = s.info
        verbs = [v for v in VERBS if (info.user_creatable or v != "create")
                 and (v != "deletecollection" or collection_deletable(s))]
        entry: dict[str, Any] = {
            "name": info.plural, "singularName": info.singular, "namespaced": info.namespaced,
            "kind": info.kind, "verbs": verbs,
        }
        if info.short_names:
            entry["shortNames"] = list(info.short_names)
        if info.categories:
            entry["categories"] = list(info.categories)
        resources.append(entry)
        if info.has_status:
            resources.append({"name": f"{info.plural}/status", "singularName": "",
                              "namespaced": info.namespaced, "kind": info.kind,
                              "verbs": ["get", "patch", "update"]})
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version,
            "resources": resources}
