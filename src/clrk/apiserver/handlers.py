"""Kubernetes REST semantics over the store: CRUD, patch, apply, watch, delete, GC."""

from __future__ import annotations

import asyncio
import base64
import copy
import datetime as dt
import json
import logging
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from clrk.api.base import KindInfo, Resource
from clrk.api.registry import all_kinds
from clrk.api.validation import AdmissionError, admit
from clrk.apiserver import managedfields, patching
from clrk.apiserver.decoding import MAX_BODY, MAX_NODES, count_values, decode, decode_object
from clrk.apiserver.errors import APIError, already_exists, conflict, invalid, not_found
from clrk.apiserver.selectors import Selector, SelectorError
from clrk.apiserver.storage import Event, Key, Obj, Store, TooOld
from clrk.apiserver.tables import table
from clrk.apiserver.watch import ReadOnlyKind, WatchHub, WatchParams, stream

log = logging.getLogger("clrk.apiserver")

SERVER_METADATA = ("uid", "creationTimestamp", "generation", "resourceVersion",
                   "deletionTimestamp", "deletionGracePeriodSeconds", "selfLink")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_QUALIFIED = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")


def flag(value: str | None) -> bool:
    """Query booleans as clients send them: true, True, 1."""
    return (value or "").lower() in ("true", "1")


def now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Served:
    """A kind as the API serves it."""

    cls: type[Resource]

    @property
    def info(self) -> KindInfo:
        return self.cls.kind_info

    @property
    def resource(self) -> str:
        return self.info.plural

    def key(self, namespace: str, name: str) -> Key:
        return Key(self.info.group, self.info.plural,
                   namespace if self.info.namespaced else "", name)


@dataclass
class Request:
    """A parsed API request, independent of the HTTP framework."""

    method: str
    served: Served
    namespace: str | None
    name: str | None
    subresource: str
    query: dict[str, str]
    content_type: str
    accept: str
    user_agent: str
    body: bytes = b""
    watch: bool = False
    headers: dict[str, str] = field(default_factory=dict)
    value: Any = None  # the decoded body, once API.handle has decoded it
    decoded: bool = False

    def body_type(self) -> str:
        """How the body is read: PATCH bodies by their patch type, others as sent."""
        if self.method == "PATCH":
            ctype = self.content_type.split(";")[0].strip()
            return "application/yaml" if ctype == "application/apply-patch+yaml" \
                else "application/json"
        return self.content_type or "application/json"

    def decode_body(self) -> Any:
        if not self.decoded:
            self.value, self.decoded = decode(self.body, self.body_type()), True
        return self.value

    async def json_object(self) -> dict[str, Any]:
        """A subresource's JSON object body, decoded with bounds off the event loop."""
        return await asyncio.to_thread(decode_object, self.body)


Handler = Callable[[Request], Awaitable[Any]]


@dataclass
class Reply:
    """What a handler returns: a JSON body, or a stream of JSON lines."""

    status: int = 200
    body: Any = None
    stream: AsyncIterator[bytes] | None = None
    warnings: list[str] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)
    media_type: str = "application/json"
    raw: bytes | None = None  # a non-JSON body (agent output)


def _check_size(obj: Obj) -> None:
    """An object stored is as bounded as a body: a patch or apply cannot grow one past it."""
    if count_values(obj) > MAX_NODES:
        raise APIError(413, f"the object would hold more than {MAX_NODES} values",
                       "RequestEntityTooLarge")
    size = len(json.dumps(obj, separators=(",", ":")))
    if size > MAX_BODY:
        raise APIError(413, f"the object would be {size} bytes; the limit is {MAX_BODY} "
                       "bytes", "RequestEntityTooLarge")


MAX_INT_PARAM = 2**31 - 1  # limit, tailLines, timeoutSeconds: any more is a mistake


def int_param(query: dict[str, str], name: str, maximum: int = MAX_INT_PARAM) -> int:
    """A non-negative integer query parameter (0 when absent); 400 naming it otherwise."""
    text = query.get(name) or "0"
    if not re.fullmatch(r"[0-9]{1,20}", text) or int(text) > maximum:
        raise APIError(400, f"invalid {name} {text[:40]!r}: an integer from 0 to {maximum} "
                       "is required")
    return int(text)


def resource_version_param(text: str) -> int:
    """A resourceVersion a client sent: a non-negative int64, or 400."""
    if not re.fullmatch(r"[0-9]{1,19}", text) or int(text) > 2**63 - 1:
        raise APIError(400, f"invalid resourceVersion {text[:40]!r}: a non-negative integer "
                       "is required")
    return int(text)


def too_large_version(rv: int, current: int) -> APIError:
    return APIError(504, f"Too large resource version: {rv}, current: {current}", "Timeout",
                    causes=[{"reason": "ResourceVersionTooLarge",
                             "message": "Too large resource version"}])


def _sort_key(obj: Obj) -> tuple[str, str]:
    md = obj.get("metadata", {})
    return (md.get("namespace", ""), md.get("name", ""))


@dataclass(frozen=True)
class _ListPage:
    """A continue token: the list's version and the last key already returned.

    Pages after the first are read at the first page's version (rebuilt from the event
    log), so a paginated list is one consistent snapshot, as in Kubernetes.
    """

    rv: int
    after: tuple[str, str]

    def encode(self) -> str:
        raw = json.dumps({"v": "meta.k8s.io/v1", "rv": self.rv, "start": list(self.after)})
        return base64.urlsafe_b64encode(raw.encode()).decode()

    @classmethod
    def decode(cls, token: str) -> _ListPage:
        try:
            doc = json.loads(base64.urlsafe_b64decode(token.encode()))
            ns, name = doc["start"]
            page = cls(int(doc["rv"]), (str(ns), str(name)))
        except (ValueError, KeyError, TypeError):
            raise APIError(400, f"invalid continue token {token[:80]!r}") from None
        if not 0 <= page.rv <= 2**63 - 1:
            raise APIError(400, f"invalid continue token {token[:80]!r}")
        return page


def _kind_label(info: KindInfo) -> str:
    return f"{info.plural}.{info.group}" if info.group else info.plural


class API:
    """The served kinds and the verbs on them."""

    def __init__(self, store: Store, hub: WatchHub, bookmark_interval: float = 30.0,
                 groups: frozenset[str] | None = None) -> None:
        """``groups``: the API groups served here (all when None). Behind kube-aggregator
        only clrk's own group is: namespaces, Secrets and Events are kube-apiserver's."""
        self.store = store
        self.hub = hub
        self.bookmark_interval = bookmark_interval
        self.served: dict[tuple[str, str, str], Served] = {}
        for cls in all_kinds():
            i = cls.kind_info
            if groups is None or i.group in groups:
                self.served[(i.group, i.version, i.plural)] = Served(cls)
        self.groups = frozenset(s.info.group for s in self.served.values())
        # Namespaces are checked only where they are kept (not when kube-apiserver has them).
        self.owns_namespaces = "" in self.groups
        self.subresources: dict[tuple[str, str, str], Handler] = {}
        # Subresources whose bodies are not API objects (agent input) get their own limit.
        self.body_limits: dict[tuple[str, str, str], int] = {}
        # Told when such a body is refused (413), e.g. to record a Rejected Invocation.
        self.body_refused: dict[tuple[str, str, str],
                                Callable[[str, str, dict[str, str], APIError], None]] = {}
        # Kinds kept outside SQLite (Invocations in the telemetry store): read-only here.
        self.readers: dict[tuple[str, str], ReadOnlyKind] = {}
        self._lock = asyncio.Lock()

    def lookup(self, group: str, version: str, plural: str) -> Served | None:
        return self.served.get((group, version, plural))

    def served_kind(self, group: str, kind: str) -> Served | None:
        return next((s for s in self.served.values()
                     if s.info.group == group and s.info.kind == kind), None)

    # ---- reads -------------------------------------------------------------------------

    def _get(self, served: Served, namespace: str, name: str) -> Obj:
        obj = self.store.get(served.key(namespace, name))
        if obj is None:
            raise not_found(served.resource, name, served.info.group)
        return obj

    def _check_namespace(self, served: Served, namespace: str | None) -> None:
        if served.info.namespaced and namespace and self.owns_namespaces:
            ns = self.store.get(Key("", "namespaces", "", namespace))
            if ns is None:
                raise not_found("namespaces", namespace)

    async def handle(self, req: Request) -> Reply:
        if req.subresource and req.subresource != "status":
            handler = self.subresources.get(
                (req.served.info.group, req.served.resource, req.subresource))
            if handler is None:
                raise APIError(404, f"the server could not find the requested resource "
                               f"({req.served.resource}/{req.subresource})")
            result = await handler(req)
            return result if isinstance(result, Reply) else Reply(body=result)
        if req.subresource == "status" and not req.served.info.has_status:
            raise APIError(404, f"{req.served.resource} has no status subresource")
        reader = self.readers.get((req.served.info.group, req.served.resource))
        if req.method != "GET" and reader is None and req.body.strip():
            # Off the event loop: even a bounded body can take a while to parse and walk.
            await asyncio.to_thread(req.decode_body)
        if reader is not None and req.method != "GET":
            raise APIError(405, f"{req.served.resource} are written by clrk itself; "
                           f"{req.method} is not allowed", "MethodNotAllowed")
        if reader is not None and req.name and not req.watch \
                and not flag(req.query.get("watch")):
            found = reader.get(req.namespace or "", req.name)
            if found is None:
                raise not_found(req.served.resource, req.name, req.served.info.group)
            return Reply(body=self._render_one(req, found))
        if req.method == "GET":
            if req.watch or (flag(req.query.get("watch")) and not req.name):
                return Reply(stream=self.watch(req))
            if req.name:
                obj = self._get(req.served, req.namespace or "", req.name)
                return Reply(body=self._render_one(req, obj))
            return Reply(body=self.list_objects(req))
        write: Callable[[Request], Reply] | None = None
        if req.method == "POST" and not req.name:
            write = self.create
        elif req.method == "PUT" and req.name:
            write = self.update
        elif req.method == "PATCH" and req.name:
            write = self.patch
        elif req.method == "DELETE":
            write = self.delete if req.name else self.delete_collection
        if write is None:
            raise APIError(405, f"{req.method} is not supported on this path")
        async with self._lock:  # writes are serialized: one resourceVersion order
            # In a thread: a patch, an apply or an admission of a large object is Python
            # work a request can make long, and the loop must go on serving meanwhile.
            return await asyncio.to_thread(write, req)

    def _render_one(self, req: Request, obj: Obj) -> Any:
        if "as=Table" in req.accept:
            include = req.query.get("includeObject", "Metadata")
            return table(req.served.info, [obj], include,
                         {"resourceVersion": obj["metadata"]["resourceVersion"]})
        return obj

    def _selector(self, req: Request) -> Selector:
        try:
            return Selector.parse(req.query.get("labelSelector"), req.query.get("fieldSelector"))
        except SelectorError as err:
            raise APIError(400, str(err)) from None

    def list_objects(self, req: Request) -> Any:
        served = req.served
        sel = self._selector(req)
        if req.namespace:
            self._check_namespace(served, req.namespace)
        ns = req.namespace if served.info.namespaced else None
        limit = int_param(req.query, "limit")
        page = _ListPage.decode(req.query["continue"]) if req.query.get("continue") else None
        group, plural = served.info.group, served.resource
        reader = self.readers.get((group, plural))
        if reader is not None:
            rv = page.rv if page else reader.resource_version
            objs = reader.list_objects(group, plural, ns)
        elif page and page.rv > self.store.resource_version:
            raise APIError(400, f"invalid continue token {req.query['continue'][:80]!r}: it "
                           "is from the future")
        elif (rv := page.rv if page else self._list_version(req)) == \
                self.store.resource_version:
            objs = self.store.list_objects(group, plural, ns)
        else:
            try:
                objs = self.store.list_at(rv, group, plural, ns)
            except TooOld as err:
                what = ("the continue token is too old to list consistently; start a new "
                        "list" if page else str(err))
                raise APIError(410, what, "Expired") from None
        items = [o for o in objs if sel.matches(o)]
        if page:
            items = [o for o in items if _sort_key(o) > page.after]
        meta: dict[str, Any] = {"resourceVersion": str(rv)}
        if 0 < limit < len(items):
            meta["remainingItemCount"] = len(items) - limit
            items = items[:limit]
            meta["continue"] = _ListPage(rv, _sort_key(items[-1])).encode()
        if "as=Table" in req.accept:
            return table(served.info, items, req.query.get("includeObject", "Metadata"), meta)
        return {"apiVersion": served.info.api_version, "kind": served.info.list_kind,
                "metadata": meta, "items": items}

    def _list_version(self, req: Request) -> int:
        """The version a LIST reads at: current, unless resourceVersionMatch=Exact asks."""
        current = self.store.resource_version
        text = req.query.get("resourceVersion") or ""
        match = req.query.get("resourceVersionMatch") or ""
        if match not in ("", "Exact", "NotOlderThan"):
            raise APIError(400, f"invalid resourceVersionMatch {match!r}: use Exact or "
                           "NotOlderThan")
        if match and not text:
            raise APIError(400, "resourceVersionMatch is forbidden unless resourceVersion is "
                           "provided")
        if not text:
            return current
        rv = resource_version_param(text)
        if match == "Exact" and rv == 0:
            raise APIError(400, 'resourceVersionMatch "Exact" is forbidden for '
                           'resourceVersion "0"')
        if rv > current:
            raise too_large_version(rv, current)
        return rv if match == "Exact" else current

    def watch(self, req: Request) -> AsyncIterator[bytes]:
        """Validate the parameters now (errors get a proper status), stream afterwards."""
        served = req.served
        rv_param = req.query.get("resourceVersion") or ""
        initial = flag(req.query.get("sendInitialEvents"))
        since: int | None = None
        source = self.readers.get((served.info.group, served.resource), self.store)
        if rv_param not in ("", "0") and not initial:
            since = resource_version_param(rv_param)
            if since > source.resource_version:
                raise too_large_version(since, source.resource_version)
        params = WatchParams(
            info=served.info, selector=self._selector(req),
            namespace=req.namespace if served.info.namespaced else None, name=req.name,
            since=since, initial_bookmark=initial,
            bookmarks=flag(req.query.get("allowWatchBookmarks")),
            timeout=float(int_param(req.query, "timeoutSeconds")) or None,
            table_include=(req.query.get("includeObject", "Metadata")
                           if "as=Table" in req.accept else None),
            bookmark_interval=self.bookmark_interval)
        return stream(source, self.hub, params)

    # ---- writes ------------------------------------------------------------------------

    def _publish(self, ev: Event) -> None:
        self.hub.publish(ev)

    def _body_object(self, req: Request) -> Obj:
        value = req.decode_body()
        if not isinstance(value, dict):
            raise APIError(400, "the request body must be a JSON or YAML object")
        return value

    def _field_validation(self, req: Request) -> str:
        fv = req.query.get("fieldValidation") or "Warn"
        if fv not in ("Strict", "Warn", "Ignore"):
            raise APIError(400, f"invalid fieldValidation {fv!r}: use Strict, Warn or Ignore")
        return fv

    def _manager(self, req: Request, default_op: str = "Update") -> str:
        m = req.query.get("fieldManager")
        if m:
            if len(m) > 128:
                raise APIError(422, "fieldManager must be at most 128 characters")
            return m
        agent = req.user_agent.split("/")[0].split(" ")[0] or "unknown"
        return agent

    def _validate_metadata(self, served: Served, obj: Obj) -> list[dict[str, str]]:
        md = obj.get("metadata")
        causes: list[dict[str, str]] = []
        if not isinstance(md, dict):
            return [{"field": "metadata", "message": "Required value",
                     "reason": "FieldValueRequired"}]
        name = md.get("name")
        limit = served.info.name_max_length
        rx = _DNS_LABEL if limit <= 63 else _DNS_SUBDOMAIN
        if not isinstance(name, str) or not name:
            causes.append({"field": "metadata.name", "reason": "FieldValueRequired",
                           "message": "Required value: name or generateName is required"})
        elif len(name) > limit or not rx.match(name):
            kind = "RFC 1123 label" if limit <= 63 else "RFC 1123 subdomain"
            causes.append({"field": "metadata.name", "reason": "FieldValueInvalid",
                           "message": f'Invalid value: "{name}": a lowercase {kind} must '
                           "consist of lower case alphanumeric characters or '-', start and "
                           f"end with an alphanumeric character, at most {limit} characters"})
        for which in ("labels", "annotations"):
            values = md.get(which)
            if values is None:
                continue
            if not isinstance(values, dict):
                causes.append({"field": f"metadata.{which}", "reason": "FieldValueInvalid",
                               "message": "must be a map of strings"})
                continue
            for k, v in values.items():
                keyname = k.split("/", 1)[-1]
                prefix = k.split("/", 1)[0] if "/" in k else ""
                if (not _QUALIFIED.match(keyname) or len(keyname) > 63
                        or (prefix and not _DNS_SUBDOMAIN.match(prefix))):
                    causes.append({"field": f"metadata.{which}", "reason": "FieldValueInvalid",
                                   "message": f'Invalid value: "{k}": not a valid key'})
                if not isinstance(v, str):
                    causes.append({"field": f"metadata.{which}.{k}",
                                   "reason": "FieldValueInvalid",
                                   "message": "Invalid value: must be a string"})
                elif which == "labels" and (len(v) > 63 or not _LABEL_VALUE.match(v)):
                    causes.append({"field": f"metadata.labels.{k}",
                                   "reason": "FieldValueInvalid",
                                   "message": f'Invalid value: "{v}": not a valid label value'})
        fins = md.get("finalizers")
        if fins is not None and (not isinstance(fins, list)
                                 or not all(isinstance(f, str) and f for f in fins)):
            causes.append({"field": "metadata.finalizers", "reason": "FieldValueInvalid",
                           "message": "must be a list of non-empty strings"})
        return causes

    def _admit(self, req: Request, obj: Obj, name: str) -> tuple[Obj, list[str]]:
        served = req.served
        info = served.info
        causes = self._validate_metadata(served, obj)
        api_version = obj.get("apiVersion")
        if api_version and api_version != info.api_version:
            raise APIError(400, f"the API version in the data ({api_version}) does not match "
                           f"the expected API version ({info.api_version})")
        if obj.get("kind") and obj.get("kind") != info.kind:
            raise APIError(400, f"the kind in the data ({obj.get('kind')}) does not match the "
                           f"expected kind ({info.kind})")
        if info.kind == "Secret":
            obj = _fold_string_data(obj)
        try:
            admitted, warnings = admit(served.cls, obj, self._field_validation(req))  # type: ignore[arg-type]
        except AdmissionError as err:
            causes += [{"field": c.field, "message": c.message, "reason": c.reason}
                       for c in err.causes]
            admitted, warnings = obj, []
        if causes:
            raise invalid(info.kind, info.group, name, causes)
        admitted["apiVersion"] = info.api_version
        admitted["kind"] = info.kind
        return admitted, warnings

    def create(self, req: Request, obj: Obj | None = None,
               managed_fields: list[Any] | None = None) -> Reply:
        """POST, and server-side apply of a missing object (which brings its own ownership)."""
        served = req.served
        info = served.info
        if not info.user_creatable:
            raise APIError(405, f"{_kind_label(info)} are written by the system only; "
                           "they cannot be created through the API", "MethodNotAllowed")
        if obj is None:
            obj = self._body_object(req)
        md = obj.setdefault("metadata", {})
        if not isinstance(md, dict):
            raise APIError(400, "metadata must be an object")
        if not md.get("name") and md.get("generateName"):
            md["name"] = f"{md['generateName']}{uuid.uuid4().hex[:5]}"
        namespace = ""
        if info.namespaced:
            namespace = req.namespace or md.get("namespace") or "default"
            if md.get("namespace") and md["namespace"] != namespace:
                raise APIError(400, "the namespace of the provided object does not match the "
                               "namespace sent on the request")
            md["namespace"] = namespace
            self._check_namespace(served, namespace)
            ns_obj = self.store.get(Key("", "namespaces", "", namespace))
            if ns_obj and ns_obj["metadata"].get("deletionTimestamp"):
                raise APIError(403, f'unable to create new content in namespace {namespace} '
                               "because it is being terminated", "Forbidden")
        else:
            md.pop("namespace", None)
        for f in SERVER_METADATA:
            md.pop(f, None)
        md.pop("managedFields", None)
        if info.has_status:
            obj.pop("status", None)
        name = md.get("name") or ""
        admitted, warnings = self._admit(req, obj, name)
        key = served.key(namespace, name)
        if self.store.get(key) is not None:
            raise already_exists(served.resource, name, info.group)
        amd = admitted["metadata"]
        amd["uid"] = str(uuid.uuid4())
        amd["creationTimestamp"] = now()
        amd["generation"] = 1
        if info.kind == "Namespace":
            admitted["status"] = {"phase": "Active"}
        if managed_fields is None:
            admitted = managedfields.record_update(None, admitted, self._manager(req))
        else:
            amd["managedFields"] = managed_fields
        if req.query.get("dryRun") == "All":
            return Reply(201, admitted, warnings=warnings)
        _check_size(admitted)
        ev = self.store.put(key, admitted, "ADDED")
        self._publish(ev)
        self._collect_if_dangling(served, ev.object)
        return Reply(201, ev.object, warnings=warnings)

    def _finish_write(self, req: Request, old: Obj, new: Obj, warnings: list[str],
                      precondition_rv: str | None, applied: bool = False) -> Reply:
        """Common tail of PUT and PATCH: split status/spec, bump generation, store."""
        served = req.served
        info = served.info
        name = old["metadata"]["name"]
        if precondition_rv and precondition_rv != old["metadata"]["resourceVersion"]:
            raise conflict(served.resource, name, info.group)
        new = copy.deepcopy(new)
        new.setdefault("metadata", {})
        if not isinstance(new["metadata"], dict):
            raise APIError(400, "metadata must be an object")
        nmd = new["metadata"]
        omd = old["metadata"]
        if nmd.get("name", name) != name:
            raise APIError(400, f'the name of the object ({nmd.get("name")}) does not match '
                           f"the name on the URL ({name})")
        if info.namespaced and nmd.get("namespace", omd.get("namespace")) != omd.get(
                "namespace"):
            raise APIError(400, "the namespace of the object does not match the request")
        if req.subresource == "status":
            # Only status may change through /status.
            status = new.get("status")
            new = copy.deepcopy(old)
            if status is None:
                new.pop("status", None)
            else:
                new["status"] = status
            new["metadata"]["managedFields"] = nmd.get("managedFields",
                                                       omd.get("managedFields"))
        else:
            if info.has_status:
                if "status" in old:
                    new["status"] = copy.deepcopy(old["status"])
                else:
                    new.pop("status", None)
            for f in SERVER_METADATA:
                if f in omd:
                    nmd[f] = omd[f]
                else:
                    nmd.pop(f, None)
            nmd["name"] = name
            if info.namespaced:
                nmd["namespace"] = omd["namespace"]
            if omd.get("deletionTimestamp"):
                added = set(nmd.get("finalizers") or []) - set(omd.get("finalizers") or [])
                if added:
                    raise invalid(info.kind, info.group, name, [{
                        "field": "metadata.finalizers", "reason": "FieldValueForbidden",
                        "message": "Forbidden: no new finalizers can be added if the object "
                                   "is being deleted"}])
        admitted, more = self._admit(req, new, name)
        warnings = warnings + more
        amd = admitted["metadata"]
        for f in SERVER_METADATA:
            if f in omd:
                amd[f] = omd[f]
        if _spec_of(admitted) != _spec_of(old):
            amd["generation"] = int(omd.get("generation", 1)) + 1
        if not applied:  # server-side apply has already recorded ownership
            admitted = managedfields.record_update(old, admitted, self._manager(req),
                                                   subresource=req.subresource)
        if _same(admitted, old):
            return Reply(200, old, warnings=warnings)
        if req.query.get("dryRun") == "All":
            return Reply(200, admitted, warnings=warnings)
        key = served.key(omd.get("namespace", ""), name)
        if amd.get("deletionTimestamp") and not amd.get("finalizers"):
            ev = self.store.delete(key, admitted)
            self._publish(ev)
            self._collect_garbage(ev.object)
            return Reply(200, ev.object, warnings=warnings)
        _check_size(admitted)
        ev = self.store.put(key, admitted, "MODIFIED")
        self._publish(ev)
        return Reply(200, ev.object, warnings=warnings)

    def update(self, req: Request) -> Reply:
        obj = self._body_object(req)
        old = self._get(req.served, req.namespace or "", req.name or "")
        md = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else {}
        return self._finish_write(req, old, obj, [], (md or {}).get("resourceVersion"))

    def patch(self, req: Request) -> Reply:
        served = req.served
        ctype = req.content_type.split(";")[0].strip()
        namespace = req.namespace or ""
        if ctype == "application/apply-patch+yaml":
            return self._apply(req)
        old = self._get(served, namespace, req.name or "")
        patch_doc = req.decode_body()
        try:
            if ctype == "application/merge-patch+json":
                new = patching.merge_patch(old, patch_doc)
            elif ctype == "application/json-patch+json":
                new = patching.json_patch(old, patch_doc)
            elif ctype == "application/strategic-merge-patch+json":
                if served.info.group:
                    raise APIError(415, "strategic merge patch is not supported for "
                                   f"{_kind_label(served.info)}: use --type=merge or "
                                   "--type=json", "UnsupportedMediaType")
                new = patching.strategic_merge_patch(old, patch_doc)
            else:
                raise APIError(415, f"the media type {ctype!r} is not supported for PATCH; "
                               "use application/merge-patch+json, application/json-patch+json "
                               "or application/apply-patch+yaml", "UnsupportedMediaType")
        except patching.PatchError as err:
            raise APIError(err.code, err.message, err.reason) from None
        if not isinstance(new, dict):
            raise APIError(422, "the patch must leave an object")
        pmd = patch_doc.get("metadata") if isinstance(patch_doc, dict) else None
        precondition = pmd.get("resourceVersion") if isinstance(pmd, dict) else None
        if precondition is None:
            new.setdefault("metadata", {})
            if isinstance(new["metadata"], dict):
                new["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"]
        return self._finish_write(req, old, new, [], precondition)

    def _apply(self, req: Request) -> Reply:
        served = req.served
        info = served.info
        applied = req.decode_body()
        if not isinstance(applied, dict):
            raise APIError(400, "the apply patch must be an object")
        manager = req.query.get("fieldManager")
        if not manager:
            raise APIError(400, "fieldManager is required for apply requests (PATCH with "
                           "application/apply-patch+yaml)")
        force = flag(req.query.get("force"))
        md = applied.get("metadata") or {}
        if md.get("name") and md["name"] != req.name:
            raise APIError(400, f"the name of the object ({md['name']}) does not match the "
                           f"name on the URL ({req.name})")
        namespace = req.namespace or ""
        old = self.store.get(served.key(namespace, req.name or ""))
        if old is not None and info.has_status:
            if req.subresource == "status":
                applied = {k: v for k, v in applied.items()
                           if k in ("apiVersion", "kind", "metadata", "status")}
            else:
                applied.pop("status", None)
        try:
            merged = managedfields.apply(old, applied, manager, force,
                                         subresource=req.subresource)
        except managedfields.ApplyConflict as err:
            causes = [{"reason": "FieldManagerConflict",
                       "message": f'conflict with "{m}"', "field": p} for p, m in err.conflicts]
            listing = "; ".join(f'conflict with "{m}": {p}' for p, m in err.conflicts)
            raise APIError(409, f"Apply failed with {len(err.conflicts)} conflict"
                           f"{'s' if len(err.conflicts) != 1 else ''}: {listing}", "Conflict",
                           name=req.name or "", group=info.group, kind=served.resource,
                           causes=causes) from None
        if old is None:
            if req.subresource:
                raise not_found(served.resource, req.name or "", info.group)
            merged.setdefault("metadata", {})["name"] = req.name
            if info.namespaced:
                merged["metadata"]["namespace"] = namespace
            return self.create(req, merged,
                               managed_fields=merged["metadata"].get("managedFields"))
        pmd = applied.get("metadata") or {}
        return self._finish_write(req, old, merged, [],
                                  pmd.get("resourceVersion") if isinstance(pmd, dict) else None,
                                  applied=True)

    def _delete_options(self, req: Request) -> dict[str, Any]:
        opts: dict[str, Any] = {}
        if req.body.strip():
            value = req.decode_body()
            if isinstance(value, dict):
                opts = value
        for k in ("propagationPolicy", "dryRun", "gracePeriodSeconds"):
            if k in req.query:
                opts[k] = req.query[k]
        return opts

    def delete(self, req: Request) -> Reply:
        served = req.served
        namespace = req.namespace or ""
        obj = self._get(served, namespace, req.name or "")
        opts = self._delete_options(req)
        pre = opts.get("preconditions") or {}
        md = obj["metadata"]
        if pre.get("uid") and pre["uid"] != md.get("uid"):
            raise APIError(409, f"Precondition failed: UID in precondition: {pre['uid']}, "
                           f"UID in object meta: {md.get('uid')}", "Conflict")
        if pre.get("resourceVersion") and pre["resourceVersion"] != md.get("resourceVersion"):
            raise APIError(409, "Precondition failed: resourceVersion in precondition: "
                           f"{pre['resourceVersion']}, resourceVersion in object meta: "
                           f"{md.get('resourceVersion')}", "Conflict")
        dry = opts.get("dryRun") in ("All", ["All"])
        return self._delete_object(served, obj, opts.get("propagationPolicy") or "Background",
                                   dry)

    def _delete_object(self, served: Served, obj: Obj, policy: str, dry: bool) -> Reply:
        md = obj["metadata"]
        key = served.key(md.get("namespace", ""), md["name"])
        if served.info.kind == "Namespace":
            return self._delete_namespace(obj, dry)
        if md.get("finalizers"):
            if md.get("deletionTimestamp"):
                return Reply(200, obj)
            new = copy.deepcopy(obj)
            new["metadata"]["deletionTimestamp"] = now()
            new["metadata"]["deletionGracePeriodSeconds"] = 0
            if dry:
                return Reply(200, new)
            ev = self.store.put(key, new, "MODIFIED")
            self._publish(ev)
            return Reply(200, ev.object)
        if dry:
            return Reply(200, obj)
        ev = self.store.delete(key, copy.deepcopy(obj))
        self._publish(ev)
        if policy != "Orphan":
            self._collect_garbage(ev.object)
        return Reply(200, ev.object)

    def _collect_garbage(self, owner: Obj) -> None:
        uid = owner["metadata"].get("uid")
        if not uid:
            return
        for key, dependent in self.store.owned_by(uid):
            served = next((s for s in self.served.values()
                           if s.info.group == key.group and s.resource == key.plural), None)
            if served is None:
                continue
            refs = [r for r in dependent["metadata"].get("ownerReferences", [])
                    if r.get("uid") != uid]
            if refs:  # other owners keep it alive
                new = copy.deepcopy(dependent)
                new["metadata"]["ownerReferences"] = refs
                self._publish(self.store.put(key, new, "MODIFIED"))
                continue
            self._delete_object(served, dependent, "Background", False)

    def _dangling(self, obj: Obj) -> bool:
        """Every owner is gone (all of them are kinds kept here): the garbage collector's
        case of an owner deleted before its dependent was written."""
        refs = obj["metadata"].get("ownerReferences") or []
        kept_here = all(str(r.get("apiVersion", "")).rpartition("/")[0] in self.groups
                        for r in refs)
        return bool(refs) and kept_here and \
            not any(self.store.has_uid(str(r.get("uid"))) for r in refs)

    def _collect_if_dangling(self, served: Served, obj: Obj) -> None:
        if self._dangling(obj):
            self._delete_object(served, obj, "Background", False)

    def collect_dangling(self) -> int:
        """Delete the dependents whose owners are all gone (at startup: a crash between
        an owner's deletion and its dependent's creation must not leave it forever)."""
        count = 0
        for key, obj in self.store.with_owners():
            served = next((s for s in self.served.values()
                           if s.info.group == key.group and s.resource == key.plural), None)
            if served is not None and self._dangling(obj):
                self._delete_object(served, obj, "Background", False)
                count += 1
        return count

    def _delete_namespace(self, ns: Obj, dry: bool) -> Reply:
        name = ns["metadata"]["name"]
        if name in ("default", "clrk", "kube-system"):
            raise APIError(403, f'namespace "{name}" is reserved and cannot be deleted',
                           "Forbidden")
        if dry:
            return Reply(200, ns)
        key = Key("", "namespaces", "", name)
        new = copy.deepcopy(ns)
        new["metadata"]["deletionTimestamp"] = now()
        new["status"] = {"phase": "Terminating"}
        self._publish(self.store.put(key, new, "MODIFIED"))
        for k in self.store.keys_in_namespace(name):
            served = next((s for s in self.served.values()
                           if s.info.group == k.group and s.resource == k.plural), None)
            obj = self.store.get(k)
            if served is None or obj is None:
                continue
            if obj["metadata"].get("finalizers"):
                o = copy.deepcopy(obj)
                o["metadata"]["finalizers"] = []
                obj = o
            self._publish(self.store.delete(k, obj))
        final = self.store.get(key) or new
        ev = self.store.delete(key, final)
        self._publish(ev)
        return Reply(200, ev.object)

    def delete_collection(self, req: Request) -> Reply:
        served = req.served
        if not collection_deletable(served):
            raise APIError(405, "the server does not allow this method on the requested "
                           f"resource (deletecollection {served.resource})",
                           "MethodNotAllowed")
        sel = self._selector(req)
        ns = req.namespace if served.info.namespaced else None
        opts = self._delete_options(req)
        dry = opts.get("dryRun") in ("All", ["All"])
        deleted = []
        for obj in self.store.list_objects(served.info.group, served.resource, ns):
            if sel.matches(obj):
                deleted.append(self._delete_object(
                    served, obj, opts.get("propagationPolicy") or "Background", dry).body)
        return Reply(200, {"apiVersion": served.info.api_version,
                           "kind": served.info.list_kind,
                           "metadata": {"resourceVersion": str(self.store.resource_version)},
                           "items": deleted})

    def ensure_namespace(self, name: str) -> None:
        key = Key("", "namespaces", "", name)
        if not self.owns_namespaces or self.store.get(key) is not None:
            return
        obj: Obj = {"apiVersion": "v1", "kind": "Namespace",
                    "metadata": {"name": name, "uid": str(uuid.uuid4()),
                                 "creationTimestamp": now(), "generation": 1,
                                 "labels": {"kubernetes.io/metadata.name": name}},
                    "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}}
        self._publish(self.store.put(key, obj, "ADDED"))


def collection_deletable(served: Served) -> bool:
    """Namespaces have no deletecollection, as in Kubernetes (a reserved namespace
    would fail it halfway)."""
    return not (served.info.group == "" and served.resource == "namespaces")


def _spec_of(obj: Obj) -> Any:
    if "spec" in obj:
        return obj["spec"]
    return {k: v for k, v in obj.items() if k not in ("metadata", "status", "apiVersion",
                                                       "kind")}


def _same(a: Obj, b: Obj) -> bool:
    def strip(o: Obj) -> Obj:
        o = copy.deepcopy(o)
        o["metadata"].pop("managedFields", None)
        o["metadata"].pop("resourceVersion", None)
        return o

    return strip(a) == strip(b)


def _fold_string_data(obj: Obj) -> Obj:
    sd = obj.get("stringData")
    if not sd:
        obj.pop("stringData", None)
        return obj
    obj = dict(obj)
    data = dict(obj.get("data") or {})
    if isinstance(sd, dict):
        for k, v in sd.items():
            data[k] = base64.b64encode(str(v).encode()).decode()
    obj["data"] = data
    obj.pop("stringData", None)
    return obj
