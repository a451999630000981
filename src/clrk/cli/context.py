"""Global options (--kubeconfig, --context, --local, -n) and the clients they select."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lightkube import Client, ConfigError, KubeConfig

from clrk.cli.errors import CLIError
from clrk.client import FIELD_MANAGER, load_config, local_kubeconfig


@dataclass
class Options:
    kubeconfig: Path | None = None
    context: str | None = None
    local: bool = False
    namespace: str | None = None

    def config_path(self) -> Path | None:
        if self.local:
            path = local_kubeconfig()
            if not path.exists():
                raise CLIError(f"{path} does not exist: start `clrk dev` first")
            return path
        return self.kubeconfig

    def kube_config(self) -> KubeConfig:
        path = self.config_path()
        if path is not None and not path.exists():
            raise CLIError(f"kubeconfig {path} does not exist")
        try:
            return load_config(path)
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
        return Client(config=single, namespace=ns, field_manager=FIELD_MANAGER)

    def default_namespace(self) -> str:
        if self.namespace:
            return self.namespace
        try:
            single = self.kube_config().get(context_name=self.context)
        except Exception:
            return "default"
        return (single.namespace if single else None) or "default"
