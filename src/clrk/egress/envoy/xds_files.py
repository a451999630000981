"""xDS over files: Envoy watches ``lds.json`` and ``cds.json`` in a directory; a change
is a new file renamed over the old one (atomic, so Envoy never reads half a file), and
Envoy applies it without dropping open connections (listeners drain, not close)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

LISTENER = "type.googleapis.com/envoy.config.listener.v3.Listener"
CLUSTER = "type.googleapis.com/envoy.config.cluster.v3.Cluster"


def bootstrap(config_dir: Path, node_id: str, admin_port: int) -> dict[str, Any]:
    """The static part: admin on loopback, listeners and clusters from the files."""
    def source(name: str) -> dict[str, Any]:
        return {"path_config_source": {
                    "path": str(config_dir / name),
                    "watched_directory": {"path": str(config_dir)}},
                "resource_api_version": "V3"}

    return {
        "node": {"id": node_id, "cluster": "clrk-egress"},
        "admin": {"address": {"socket_address": {"address": "127.0.0.1",
                                                 "port_value": admin_port}}},
        "dynamic_resources": {"lds_config": source("lds.json"),
                              "cds_config": source("cds.json")},
        "layered_runtime": {"layers": [{"name": "static", "static_layer": {
            # The worker's Envoy serves only its own sandboxes.
            "overload.global_downstream_max_connections": 50000}}]},
    }


def _write(path: Path, doc: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(doc, indent=1))
    os.replace(tmp, path)


def write_clusters(config_dir: Path, clusters: list[dict[str, Any]]) -> str:
    """``cds.json``; returns its version, which Envoy reports once it has loaded it."""
    config_dir.mkdir(parents=True, exist_ok=True)
    version = str(_version(clusters))
    _write(config_dir / "cds.json", {"version_info": version,
                                     "resources": [{"@type": CLUSTER, **c} for c in clusters]})
    return version


def write_listeners(config_dir: Path, listeners: list[dict[str, Any]]) -> str:
    """``lds.json``; returns its version. Write it only once Envoy has the clusters it
    names: a route to a cluster Envoy lacks answers 503 ("cluster not found")."""
    config_dir.mkdir(parents=True, exist_ok=True)
    version = listeners_version(listeners)
    _write(config_dir / "lds.json", {"version_info": version,
                                     "resources": [{"@type": LISTENER, **li}
                                                   for li in listeners]})
    return version


def listeners_version(listeners: list[dict[str, Any]]) -> str:
    return str(_version(listeners))


def _version(resources: list[dict[str, Any]]) -> int:
    return abs(hash(json.dumps(resources, sort_keys=True))) % (1 << 62)
