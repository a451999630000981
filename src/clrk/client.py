"""Kubernetes clients (lightkube) and the bridge between lightkube objects and our models.

Controllers and the CLI use only this, so they work against the embedded API
server and against a real kube-apiserver with our CRDs alike.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Awaitable, Callable
from functools import cache
from pathlib import Path
from typing import Any, TypeVar

import httpx
from lightkube import ApiError, AsyncClient, Client, ConfigError, KubeConfig
from lightkube.config.client_adapter import AsyncClient as httpx_client
from lightkube.config.client_adapter import ConnectionParams
from lightkube.config.kubeconfig import SingleConfig
from lightkube.core.resource import Resource as LKResource
from lightkube.generic_resource import create_global_resource, create_namespaced_resource
from lightkube.resources import core_v1

from clrk.api.base import Resource
from clrk.kubeconfig import DEFAULT_HOME, HOST_KUBECONFIG

M = TypeVar("M", bound=Resource)
FIELD_MANAGER = "clrk"

_CORE: dict[str, Any] = {
    "Namespace": core_v1.Namespace,
    "Secret": core_v1.Secret,
    "Event": core_v1.Event,
}


@cache
def resource_class(cls: type[Resource]) -> Any:
    """The lightkube resource class serving ``cls``."""
    info = cls.kind_info
    if not info.group:
        return _CORE[info.kind]
    make = create_namespaced_resource if info.namespaced else create_global_resource
    return make(info.group, info.version, info.kind, info.plural)


def local_kubeconfig(data_dir: Path | None = None) -> Path:
    return (data_dir or DEFAULT_HOME) / HOST_KUBECONFIG


def kubeconfig_file(kubeconfig: Path | None = None, data_dir: Path | None = None
                    ) -> Path | None:
    """The kubeconfig file clients read: an explicit file, else $KUBECONFIG or
    ~/.kube/config, else the `clrk dev` one; None when there is none."""
    if kubeconfig is not None:
        return kubeconfig
    default = Path(os.environ.get("KUBECONFIG") or "~/.kube/config").expanduser()
    if default.is_file():
        return default
    local = local_kubeconfig(data_dir)
    return local if local.exists() else None


def load_config(kubeconfig: Path | None = None, data_dir: Path | None = None) -> KubeConfig:
    """The in-cluster ServiceAccount unless a file is named, else ``kubeconfig_file``."""
    if kubeconfig is None:
        with contextlib.suppress(ConfigError):
            return KubeConfig.from_service_account()
    path = kubeconfig_file(kubeconfig, data_dir)
    if path is None:
        raise ConfigError("no kubeconfig found")
    return KubeConfig.from_file(str(path))


def async_client(kubeconfig: Path | None = None, context: str | None = None,
                 namespace: str | None = None) -> AsyncClient:
    config = load_config(kubeconfig)
    return AsyncClient(config=config.get(context_name=context), namespace=namespace,
                       field_manager=FIELD_MANAGER)


def sync_client(kubeconfig: Path | None = None, context: str | None = None,
                namespace: str | None = None) -> Client:
    config = load_config(kubeconfig)
    return Client(config=config.get(context_name=context), namespace=namespace,
                  field_manager=FIELD_MANAGER)


def to_dict(obj: Any) -> dict[str, Any]:
    """A lightkube object (generic or typed) as plain JSON."""
    if isinstance(obj, dict) and not hasattr(obj, "to_dict"):
        return obj
    d: dict[str, Any] = obj.to_dict()
    info = getattr(type(obj), "_api_info", None)
    if info is not None:
        r = info.resource
        d.setdefault("apiVersion", f"{r.group}/{r.version}" if r.group else r.version)
        d.setdefault("kind", r.kind)
    return d


def to_model(cls: type[M], obj: Any) -> M:
    """A lightkube object as our typed model (metadata stays a plain mapping)."""
    return cls.model_validate(to_dict(obj))


def to_lightkube(model: Resource) -> LKResource:
    data = model.to_wire()
    data["apiVersion"] = model.kind_info.api_version
    data["kind"] = model.kind_info.kind
    obj: LKResource = resource_class(type(model)).from_dict(data)
    return obj


async def get_or_none(client: AsyncClient, res: Any, name: str,
                      namespace: str | None) -> dict[str, Any] | None:
    """The object as JSON, or None when it does not exist."""
    try:
        return to_dict(await client.get(res, name, namespace=namespace))
    except ApiError as err:
        if err.status.code == 404:
            return None
        raise


async def follow(client: AsyncClient, res: Any, namespace: str,
                 on_event: Callable[[str, dict[str, Any]], Awaitable[None] | None],
                 log: logging.Logger, what: str) -> None:
    """Watch forever, each event as JSON to ``on_event``; a broken watch (the API server
    restarting, say) is opened again after a second."""
    while True:
        try:
            async for op, obj in client.watch(res, namespace=namespace):
                handled = on_event(op, to_dict(obj))
                if handled is not None:
                    await handled
        except asyncio.CancelledError:
            raise
        except Exception as err:
            log.warning("%s watch failed (%s); retrying", what, err)
            await asyncio.sleep(1)


def get_or_none_sync(client: Client, res: Any, name: str,
                     namespace: str | None) -> dict[str, Any] | None:
    try:
        return to_dict(client.get(res, name, namespace=namespace))
    except ApiError as err:
        if err.status.code == 404:
            return None
        raise


async def create_if_absent(client: AsyncClient, obj: Any) -> dict[str, Any] | None:
    """Create ``obj``; None when an object of that name exists already."""
    try:
        return to_dict(await client.create(obj))
    except ApiError as err:
        if err.status.code == 409:
            return None
        raise


async def delete_if_present(client: AsyncClient, res: Any, name: str,
                            namespace: str | None) -> None:
    try:
        await client.delete(res, name, namespace=namespace)
    except ApiError as err:
        if err.status.code != 404:
            raise


def http_invoker(config: SingleConfig) -> Callable[[str, str, bytes],
                                                 Awaitable[tuple[int, str]]]:
    """POST to taskagents/{name}/invoke as a cron fire; returns (status, reason). Any
    kubeconfig's credentials work (a token, a client certificate, in-cluster)."""
    params = ConnectionParams(timeout=httpx.Timeout(10, read=None), trust_env=False)

    async def invoke(namespace: str, name: str, body: bytes) -> tuple[int, str]:
        path = f"/apis/clrk.apoxy.dev/v1alpha1/namespaces/{namespace}/taskagents/{name}/invoke"
        async with httpx_client(config, params) as c:
            r = await c.post(path, content=body, headers={
                "Content-Type": "application/json", "X-Clrk-Trigger": "cron"})
        return r.status_code, r.headers.get("x-clrk-reason", "")

    return invoke
