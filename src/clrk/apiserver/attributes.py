"""What a request asks for, in the terms Kubernetes authorization speaks.

kube-apiserver's RequestInfoFactory turns a method and a path into a verb (get, list,
watch, create, update, patch, delete, deletecollection), a group, version, resource,
subresource, namespace and name, or a non-resource path; RBAC rules and
SubjectAccessReviews are written in those words. This is the same mapping, done once,
before the request is routed.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote

_WRITE_VERBS = {"POST": "create", "PUT": "update", "PATCH": "patch"}


@dataclass(frozen=True)
class Attributes:
    verb: str
    path: str
    resource_request: bool = False
    group: str = ""
    version: str = ""
    resource: str = ""
    subresource: str = ""
    namespace: str = ""
    name: str = ""


def _truthy(value: str | None) -> bool:
    return (value or "").lower() in ("1", "true")


def _name_from_field_selector(selector: str | None) -> str:
    """``metadata.name=x`` (or ``==x``) narrows a list or watch to one name, as kubectl's
    ``get NAME -w`` sends it; kube-apiserver authorizes that as a request for ``x``."""
    for term in (selector or "").split(","):
        key, sep, value = term.partition("=")
        if sep and key.strip() == "metadata.name":
            return value.removeprefix("=").strip()
    return ""


def request_attributes(method: str, path: str, query: dict[str, str]) -> Attributes:
    """The authorization attributes of ``method path?query``."""
    parts = [unquote(p) for p in path.strip("/").split("/") if p]
    method = method.upper()
    plain_verb = "get" if method in ("GET", "HEAD") else method.lower()
    if not parts or parts[0] not in ("api", "apis"):
        return Attributes(plain_verb, path)
    if parts[0] == "api":
        group, rest = "", parts[1:]
    else:
        if len(parts) < 3:  # /apis, /apis/<group>: discovery
            return Attributes(plain_verb, path)
        group, rest = parts[1], parts[2:]
    if not rest:
        return Attributes(plain_verb, path)
    version, rest = rest[0], rest[1:]
    if not rest:  # /apis/<group>/<version>: discovery
        return Attributes(plain_verb, path)

    watch = False
    if rest[0] == "watch":
        watch, rest = True, rest[1:]
    namespace = ""
    if rest and rest[0] == "namespaces":
        if len(rest) >= 3:
            namespace, rest = rest[1], rest[2:]
        else:  # /api/v1/namespaces[/<name>]: the namespaces themselves
            namespace = rest[1] if len(rest) == 2 else ""
    if not rest:
        return Attributes(plain_verb, path)
    resource = rest[0]
    name = rest[1] if len(rest) > 1 else ""
    subresource = rest[2] if len(rest) > 2 else ""
    if resource == "namespaces" and group == "" and namespace and not name:
        name = namespace

    if method in ("GET", "HEAD"):
        if watch or (_truthy(query.get("watch")) and not name):
            verb = "watch"
        else:
            verb = "get" if name else "list"
        if verb in ("list", "watch") and not name:
            name = _name_from_field_selector(query.get("fieldSelector"))
    elif method == "DELETE":
        verb = "delete" if name else "deletecollection"
    else:
        verb = _WRITE_VERBS.get(method, method.lower())
    return Attributes(verb, path, True, group, version, resource, subresource, namespace,
                      name)
