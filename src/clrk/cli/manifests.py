"""Reading manifests from files, directories and stdin."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from lightkube.types import PatchType

from clrk.api.base import Resource
from clrk.api.registry import all_kinds
from clrk.cli.errors import CLIError
from clrk.client import FIELD_MANAGER, resource_class

SUFFIXES = (".yaml", ".yml", ".json")


@dataclass(frozen=True)
class Manifest:
    source: str
    cls: type[Resource]
    body: dict[str, Any]

    @property
    def name(self) -> str:
        return str(self.body.get("metadata", {}).get("name", ""))

    @property
    def label(self) -> str:
        info = self.cls.kind_info
        prefix = f"{info.singular}.{info.group}" if info.group else info.singular
        return f"{prefix}/{self.name}"


def _files(path: str, recursive: bool) -> list[Path]:
    p = Path(path)
    if not p.exists():
        raise CLIError(f"the path {path!r} does not exist")
    if p.is_file():
        return [p]
    pattern = "**/*" if recursive else "*"
    return sorted(f for f in p.glob(pattern) if f.is_file() and f.suffix in SUFFIXES)


def _kind_for(doc: dict[str, Any], source: str) -> type[Resource]:
    api_version, kind = doc.get("apiVersion"), doc.get("kind")
    if not api_version or not kind:
        raise CLIError(f"{source}: every object needs apiVersion and kind")
    for cls in all_kinds():
        info = cls.kind_info
        if info.kind == kind and info.api_version == api_version:
            return cls
    raise CLIError(f"{source}: unknown kind {kind!r} in {api_version!r}")


def _parse(text: str, source: str) -> list[dict[str, Any]]:
    try:
        docs = [json.loads(text)] if source.endswith(".json") else list(yaml.safe_load_all(text))
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        problem = getattr(err, "problem", None) or str(err)
        raise CLIError(f"{source}{where}: invalid YAML: {problem}") from None
    except json.JSONDecodeError as err:
        raise CLIError(f"{source} line {err.lineno}: invalid JSON: {err.msg}") from None
    out: list[dict[str, Any]] = []
    for d in docs:
        if d is None:
            continue
        if not isinstance(d, dict):
            raise CLIError(f"{source}: expected an object, found {type(d).__name__}")
        if d.get("kind") == "List" and isinstance(d.get("items"), list):
            out.extend(d["items"])
        else:
            out.append(d)
    return out


def load(paths: list[str], recursive: bool) -> list[Manifest]:
    manifests: list[Manifest] = []
    for path in paths:
        if path == "-":
            sources = [("<stdin>", sys.stdin.read())]
        else:
            sources = [(str(f), f.read_text()) for f in _files(path, recursive)]
        for source, text in sources:
            for doc in _parse(text, source):
                cls = _kind_for(doc, source)
                if not (doc.get("metadata") or {}).get("name"):
                    raise CLIError(f"{source}: {doc.get('kind')} without metadata.name")
                manifests.append(Manifest(source, cls, doc))
    if not manifests:
        raise CLIError("no objects found in " + ", ".join(paths))
    return manifests


def apply_request(m: Manifest, namespace: str, force: bool, dry_run: bool = False,
                  validate: str = "Strict") -> dict[str, Any]:
    """The arguments of lightkube's ``request`` for a server-side apply of ``m``: its
    ``apply`` has no fieldValidation, so the same request, strict as kubectl's by
    default (an unknown or duplicate field is an error naming it, not dropped). Used
    by `clrk apply` (sync client) and `clrk dev --apply` (async)."""
    body = dict(m.body)
    body["metadata"] = dict(body.get("metadata") or {})
    if m.cls.kind_info.namespaced:
        body["metadata"].setdefault("namespace", namespace)
    else:
        body["metadata"].pop("namespace", None)
    res = resource_class(m.cls)
    return {"method": "patch", "res": res, "name": body["metadata"].get("name"),
            "namespace": body["metadata"].get("namespace"), "obj": res.from_dict(body),
            "headers": {"Content-Type": PatchType.APPLY.value},
            "params": {"force": "true" if force else None, "fieldManager": FIELD_MANAGER,
                       "dryRun": "All" if dry_run else None, "fieldValidation": validate}}
