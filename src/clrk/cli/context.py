"""Global options (--kubeconfig, --context, --local, -n) and the clients they select."""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path

import httpx
from lightkube import Client, ConfigError, KubeConfig

from clrk.cli.errors import CLIError
from clrk.client import FIELD_MANAGER, kubeconfig_file, load_config, local_kubeconfig
from clrk.kubeconfig import DEFAULT_HOME

_WARNING = re.compile(r'\d{3} \S+ "((?:[^"\\]|\\.)*)"')
_ESCAPE = re.compile(r"\\(.)")


def print_warnings(response: httpx.Response) -> None:
    """``Warning: …`` on stderr for each warning the API server sent."""
    for header in response.headers.get_list("warning"):
        for text in _WARNING.findall(header):
            print("Warning: " + _ESCAPE.sub(r"\1", text), file=sys.stderr)


@dataclass
class Options:
    """The root command's options, shared by every subcommand through ``ctx.obj``."""

    kubeconfig: Path | None = None
    context: str | None = None
    local: bool = False
    namespace: str | None = None
    data_dir: Path = DEFAULT_HOME  # `clrk dev`'s (--data-dir, CLRK_HOME)

    def config_path(self) -> Path | None:
        if self.local:
            path = local_kubeconfig(self.data_dir)
            if not path.exists():
                raise CLIError(f"{path} does not exist: start `clrk dev` first")
            return path
        return self.kubeconfig

    def kubeconfig_file(self) -> Path:
        """The kubeconfig file the clients read (``kube_config``), for editing it."""
        path = kubeconfig_file(self.config_path(), self.data_dir)
        if path is None:
            raise CLIError("no kubeconfig found: pass --kubeconfig, set KUBECONFIG, or use "
                           "--local with `clrk dev` running")
        if not path.exists():
            raise CLIError(f"kubeconfig {path} does not exist")
        return path

    def kube_config(self) -> KubeConfig:
        path = self.config_path()
        if path is not None and not path.exists():
            raise CLIError(f"kubeconfig {path} does not exist")
        try:
            return load_config(path, self.data_dir)
        except ConfigError:
            raise CLIError("no kubeconfig found: pass --kubeconfig, set KUBECONFIG, or use "
                           "--local with `clrk dev` running") from None

    def client(self) -> Client:
        config = self.kube_config()
        try:
            single = config.get(context_name=self.context)
        except Exception as err:
            raise CLIError(f"context {self.context!r}: {err}") from None
        if single is None:
            raise CLIError("the kubeconfig has no current context: pass --context")
        ns = self.namespace or single.namespace or "default"
        client = Client(config=single, namespace=ns, field_manager=FIELD_MANAGER)
        # The server's warnings (RFC 7234 Warning headers) reach the user as kubectl's do.
        client._client._client.event_hooks["response"].append(print_warnings)
        return client

    def default_namespace(self) -> str:
        if self.namespace:
            return self.namespace
        try:
            single = self.kube_config().get(context_name=self.context)
        except Exception:
            return "default"
        return (single.namespace if single else None) or "default"
