"""CustomResourceDefinitions for a real cluster, generated from the models."""

from __future__ import annotations

from typing import Any

import yaml

from clrk.api.base import GROUP, Resource
from clrk.api.registry import all_kinds
from clrk.api.schema import object_schema


def crd_for(cls: type[Resource]) -> dict[str, Any]:
    info = cls.kind_info
    version: dict[str, Any] = {
        "name": info.version, "served": True, "storage": True,
        "schema": {"openAPIV3Schema": object_schema(cls)},
    }
    if info.has_status:
        version["subresources"] = {"status": {}}
    if info.printer_columns:
        cols = []
        for c in info.printer_columns:
            col: dict[str, Any] = {"name": c.name, "type": c.type, "jsonPath": c.json_path}
            if c.description:
                col["description"] = c.description
            if c.priority:
                col["priority"] = c.priority
            if c.format:
                col["format"] = c.format
            cols.append(col)
        version["additionalPrinterColumns"] = cols
    names: dict[str, Any] = {"kind": info.kind, "listKind": info.list_kind,
                             "plural": info.plural, "singular": info.singular}
    if info.short_names:
        names["shortNames"] = list(info.short_names)
    if info.categories:
        names["categories"] = list(info.categories)
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{info.plural}.{info.group}"},
        "spec": {"group": info.group, "names": names,
                 "scope": "Namespaced" if info.namespaced else "Cluster",
                 "versions": [version]},
    }


def all_crds() -> list[dict[str, Any]]:
    kinds = sorted((c for c in all_kinds() if c.kind_info.group == GROUP),
                   key=lambda c: c.kind_info.plural)
    return [crd_for(c) for c in kinds]


def crds_yaml() -> str:
    return yaml.safe_dump_all(all_crds(), sort_keys=False)
