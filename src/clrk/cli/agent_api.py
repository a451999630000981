"""What the agent commands share: finding an agent by name whatever its kind, and an
HTTP client for the API server's non-object endpoints (invoke, logs, traces)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any, NoReturn

import httpx
from lightkube import ApiError
from lightkube.config.client_adapter import Client as httpx_client
from lightkube.config.client_adapter import ConnectionParams

from clrk.api.agents import DaemonAgent, TaskAgent
from clrk.cli.context import Options
from clrk.cli.errors import CLIError
from clrk.client import resource_class, to_dict

KINDS = (TaskAgent, DaemonAgent)
API = "/apis/clrk.apoxy.dev/v1alpha1"
AgentKind = type[TaskAgent] | type[DaemonAgent]


def find_agent(opts: Options, name: str) -> tuple[AgentKind, dict[str, Any]]:
    """The TaskAgent, else the DaemonAgent, of that name in the namespace."""
    client = opts.client()
    ns = opts.default_namespace()
    for cls in KINDS:
        try:
            return cls, to_dict(client.get(resource_class(cls), name, namespace=ns))
        except ApiError as err:
            if err.status.code != 404:
                raise
    raise CLIError(f'no TaskAgent or DaemonAgent named "{name}" in namespace {ns}')


@contextlib.contextmanager
def http(opts: Options, read_timeout: float | None) -> Iterator[tuple[httpx.Client, str]]:
    """A client for the API server of the current context (for non-object endpoints),
    with whatever credentials the kubeconfig holds (token, client certificate, exec)."""
    config = opts.kube_config().get(context_name=opts.context)
    if config is None:
        raise CLIError("the kubeconfig has no current context: pass --context")
    params = ConnectionParams(timeout=httpx.Timeout(10, read=read_timeout))
    with httpx_client(config, params) as client:
        yield client, ""


def fail(r: httpx.Response) -> NoReturn:
    """Raise the API server's message of a failed answer as a CLI error."""
    r.read()
    try:
        message = r.json().get("message", r.text)
    except ValueError:
        message = r.text
    raise CLIError(message)
