"""The API server as clrk runs it: the generic Kubernetes REST server
(:mod:`clrk.apiserver`) with the telemetry store and its Invocation ledger, the
scheduler's invoke and heartbeat subresources, the shared counters and the web console
(``/console``) mounted on it; TLS, bearer token, uvicorn lifecycle."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from clrk import kubeconfig, pki
from clrk.apiserver.access import Access, dev_access
from clrk.apiserver.app import build_app
from clrk.apiserver.auth import load_or_create_token
from clrk.apiserver.handlers import API
from clrk.apiserver.storage import Store
from clrk.apiserver.watch import WatchHub
from clrk.console.api import Sources
from clrk.console.app import Console
from clrk.controlplane import token_budgets
from clrk.controlplane.token_budgets import TokenCounters
from clrk.scheduler import endpoints
from clrk.scheduler.invoke import Invoker
from clrk.scheduler.registry import WorkerRegistry
from clrk.serving import Server, url_host
from clrk.telemetry import endpoints as telemetry_endpoints
from clrk.telemetry.client import TelemetryStore, dsn_for
from clrk.telemetry.invocations import InvocationLedger
from clrk.telemetry.logs import AgentLogs

log = logging.getLogger("clrk.apiserver")

# Behind kube-aggregator clrk serves its own group only.
CLRK_GROUP = "clrk.apoxy.dev"


@dataclass(frozen=True)
class Delegated:
    """How a cluster's clrk API server serves: kube-apiserver's access decisions, the
    serving certificate from the mounted Secret, client certificates from kube's CAs."""

    access: Access
    client_ca_pem: bytes
    tls_cert_dir: Path  # tls.crt and tls.key (a kubernetes.io/tls Secret's keys)


class APIServer:
    """The embedded Kubernetes-compatible API server, started and stopped in-process."""

    def __init__(self, data_dir: Path, host: str = "127.0.0.1", port: int = 0, *,
                 watch_history: int = 10_000, bookmark_interval: float = 30.0,
                 telemetry_dsn: str | None = None, delegated: Delegated | None = None) -> None:
        self.data_dir = Path(data_dir)
        self.host = host
        self.port = port
        self.watch_history = watch_history
        self.bookmark_interval = bookmark_interval
        self.telemetry_dsn = telemetry_dsn or dsn_for(self.data_dir / "telemetry")
        self.delegated = delegated
        self.telemetry: TelemetryStore | None = None
        self.url = ""
        self.ca_pem = b""
        self.token = ""
        self._server: Server | None = None

    async def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        pki_dir = self.data_dir / "pki"
        tls: dict[str, str] = {}
        if self.delegated is None:
            ca = pki.load_or_create_ca(pki_dir, "clrk-apiserver-ca")
            hosts = ["localhost", "127.0.0.1", "::1"]
            if self.host not in hosts and self.host not in ("0.0.0.0", "::"):
                hosts.append(self.host)
            pki.load_or_create_serving(pki_dir, ca, hosts)
            self.ca_pem = ca.cert_pem
            self.token = load_or_create_token(self.data_dir / "token")
            access = dev_access(self.token)
            tls = {"ssl_certfile": str(pki_dir / "serving.crt"),
                   "ssl_keyfile": str(pki_dir / "serving.key")}
            groups = None
        else:
            cert_dir = self.delegated.tls_cert_dir
            client_ca = pki_dir / "client-ca.crt"
            pki_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            client_ca.write_bytes(self.delegated.client_ca_pem)
            access = self.delegated.access
            tls = {"ssl_certfile": str(cert_dir / "tls.crt"),
                   "ssl_keyfile": str(cert_dir / "tls.key"), "client_ca": str(client_ca)}
            groups = frozenset({CLRK_GROUP})
        self.store = Store(self.data_dir / "state.db", history=self.watch_history)
        self.hub = WatchHub()
        self.api = API(self.store, self.hub, self.bookmark_interval, groups)
        self.telemetry = TelemetryStore(self.telemetry_dsn,
                                        journal_dir=self.data_dir / "telemetry-journal")
        self.telemetry.open()
        self.ledger = InvocationLedger(self.telemetry, self.hub, self.watch_history)
        self.ledger.open()
        self.api.readers[(self.ledger.group, self.ledger.plural)] = self.ledger
        self.logs = AgentLogs(self.telemetry)
        telemetry_endpoints.install(self.api, self.ledger, self.logs)
        self.token_counters = TokenCounters(self.data_dir / "tokens.db")
        token_budgets.install(self.api, self.token_counters)
        self.registry = WorkerRegistry()
        self.invoker = Invoker(self.store, self.registry, self.ledger, self.logs)
        endpoints.install(self.api, self.invoker, self.registry)
        for ns in ("default", "clrk"):
            self.api.ensure_namespace(ns)
        if collected := self.api.collect_dangling():
            log.info("deleted %d object(s) whose owners were gone", collected)
        self.console = Console(access, Sources(self.store, self.ledger, self.logs,
                                               self.registry, self.token_counters))
        app = build_app(self.api, access, [self.console.mount()])
        self._server = Server(app, self.host, self.port, h11_max_incomplete_event_size=65536,
                              **tls)  # type: ignore[arg-type]
        self.port = self._server.port
        self.url = f"https://{url_host(self.host)}:{self.port}"
        await self._server.start()
        log.info("API server listening on %s", self.url)

    async def stop(self) -> None:
        if self._server is not None:
            self.hub.close_all()
            self.logs.end_followers()
            await self._server.stop()
            await self.invoker.close()
        if self.telemetry is not None:
            self.telemetry.close()
            self.telemetry = None
        if getattr(self, "store", None) is not None:
            self.store.close()
        if getattr(self, "token_counters", None) is not None:
            self.token_counters.close()

    def write_kubeconfig(self, path: Path) -> None:
        kubeconfig.write(path, self.url, self.ca_pem, self.token)
