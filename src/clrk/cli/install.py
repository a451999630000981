"""`clrk install` and `clrk upgrade`: put clrk on a Kubernetes cluster, or move it to a new
version, and wait until it serves.

The work is in :mod:`clrk.install`; this module turns flags into :class:`InstallOptions`,
asks before changing a cluster from a terminal, prints the plan, the progress and a one-line
summary, and turns every failure into one line.
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any

import httpx
import typer
from lightkube import ApiError, Client

from clrk import __version__
from clrk.cli.context import Options
from clrk.cli.errors import CLIError
from clrk.install import InstallError
from clrk.install.apply import Change, apply, counts, not_there_yet, plan, plan_one
from clrk.install.manifests import render, render_all, render_workerpool, to_yaml
from clrk.install.options import InstallOptions, RBACMode, ServingCert, TLSMode
from clrk.install.tls import generate_serving, serving_for
from clrk.install.upgrade import (
    Installed,
    check_clickhouse_secret,
    check_version,
    current_workers,
    installed_version,
    is_downgrade,
    read_installed,
    storage_class_for,
)
from clrk.install.wait import wait_ready


class RBACChoice(StrEnum):
    scoped = "scoped"
    cluster_admin = "cluster-admin"


class TLSChoice(StrEnum):
    self_signed = "self-signed"
    cert_manager = "cert-manager"


_RBAC: dict[RBACChoice, RBACMode] = {RBACChoice.scoped: "scoped",
                                     RBACChoice.cluster_admin: "cluster-admin"}
_TLS: dict[TLSChoice, TLSMode] = {TLSChoice.self_signed: "self-signed",
                                  TLSChoice.cert_manager: "cert-manager"}


@dataclass(frozen=True)
class Request:
    """The flags both commands share."""

    namespace: str
    version: str
    controller_image: str | None
    worker_image: str | None
    image_pull_secret: str | None
    clickhouse_secret: str | None
    workers: int | None
    storage_class: str | None
    rbac: RBACMode | None  # None (upgrade): as installed
    tls: TLSMode | None
    timeout: float
    dry_run: bool
    output: str | None
    yes: bool
    skip_wait: bool

    @property
    def tls_mode(self) -> TLSMode:
        return self.tls or "self-signed"

    def options(self, workers: int, serving: ServingCert | None) -> InstallOptions:
        return InstallOptions(
            namespace=self.namespace, version=self.version,
            # Empty: the images published for ``version``.
            controller_image=self.controller_image or "",
            worker_image=self.worker_image or "",
            image_pull_secret=self.image_pull_secret,
            clickhouse_secret=self.clickhouse_secret, workers=workers,
            storage_class=self.storage_class, rbac=self.rbac or "scoped",
            tls=self.tls_mode, serving=serving)

    def keeping(self, installed: Installed) -> Request:
        """The flags given, and for those left out what ``installed`` was made with."""
        return dataclasses.replace(
            self, rbac=self.rbac or installed.rbac, tls=self.tls or installed.tls,
            image_pull_secret=self.image_pull_secret or installed.image_pull_secret,
            clickhouse_secret=self.clickhouse_secret or installed.clickhouse_secret)


def print_manifests(request: Request) -> None:
    """`-o yaml`: the manifests with a fresh serving certificate; no cluster is touched."""
    serving = generate_serving(request.namespace) if request.tls_mode == "self-signed" else None
    options = request.options(request.workers if request.workers is not None else 1, serving)
    print(to_yaml(render_all(options)), end="")


def _summary(changes: list[Change]) -> str:
    n = counts(changes)
    return f"{n['create']} created, {n['update']} updated, {n['unchanged']} unchanged"


def _print_dry_run(changes: list[Change]) -> None:
    pending = [c for c in changes if c.action != "unchanged"]
    for c in pending:
        print(c.diff, end="" if c.diff.endswith("\n") else "\n")
    if not pending:
        print("no changes")
        return
    n = counts(changes)
    print(f"dry run: {n['create']} to create, {n['update']} to update, "
          f"{n['unchanged']} unchanged; nothing applied")


def _confirm(request: Request, changes: list[Change]) -> None:
    pending = [c for c in changes if c.action != "unchanged"]
    if request.yes or not pending or not sys.stdin.isatty():
        return
    for c in pending:
        print(f"  {c.action:<7} {c.label}")
    print(f"  ({counts(changes)['unchanged']} unchanged)")
    if not typer.confirm(f"Apply {len(pending)} changes?", default=False):
        raise CLIError("aborted: nothing was applied")


def _apply_each(client: Client, objects: list[Any], changes: list[Change]) -> None:
    for obj, change in zip(objects, changes, strict=True):
        try:
            apply(client, [obj])
        except ApiError as err:
            raise CLIError(f"{change.label}: {err.status.message}") from None


def _workers(client: Client, request: Request) -> int:
    """``--workers``, else the pool's count in the cluster (upgrade), else 1."""
    if request.workers is not None:
        return request.workers
    current = current_workers(client)
    return 1 if current is None else current


def _apply_pool(client: Client, request: Request, options: InstallOptions,
                keep_workers: bool) -> Change | None:
    """Apply the ``default`` WorkerPool; None when the clrk API is not served yet (only
    possible with --skip-wait)."""
    if keep_workers and request.workers is None:
        # Read again: the API may not have been served when the plan was made.
        options = dataclasses.replace(options, workers=_workers(client, request))
    pool = render_workerpool(options)
    try:
        change = plan_one(client, pool)
        apply(client, [pool])
    except (ApiError, httpx.HTTPStatusError) as err:
        message = err.status.message if isinstance(err, ApiError) else str(err).split("\n")[0]
        if request.skip_wait and not_there_yet(err):
            print(f"the default WorkerPool was not applied: the clrk API is not served yet "
                  f"({message}); run this command again once it is")
            return None
        raise CLIError(f"workerpool/default/default: {message}") from None
    return change


def run(client: Client, request: Request, upgrade: bool = False,
        allow_downgrade: bool = False) -> None:
    """Plan, confirm, apply, wait, then apply the WorkerPool and print the summary."""
    ns = request.namespace
    if upgrade:
        before = read_installed(client, ns)
        installed: str | None = before.version
        check_version(before.version, request.version, allow_downgrade)
        request = request.keeping(before)
    else:
        installed = installed_version(client, ns)
        if installed and is_downgrade(installed, request.version):
            raise InstallError(f"clrk {installed} is installed in namespace {ns}, newer than "
                               f"{request.version}: `clrk upgrade --version {request.version} "
                               "--allow-downgrade` downgrades it")
    request = dataclasses.replace(
        request, storage_class=storage_class_for(client, ns, request.storage_class))
    if request.clickhouse_secret:
        check_clickhouse_secret(client, ns, request.clickhouse_secret)
    serving = serving_for(client, ns) if request.tls_mode == "self-signed" else None
    options = request.options(_workers(client, request), serving)
    objects = render(options)
    changes = plan(client, [*objects, render_workerpool(options)])
    if request.dry_run:
        _print_dry_run(changes)
        return
    _confirm(request, changes)
    _apply_each(client, objects, changes[:-1])
    if not request.skip_wait:
        print(f"waiting up to {request.timeout:g}s for clrk in namespace {ns} to serve")
        wait_ready(client, ns, request.timeout, lambda line: print(f"  {line}"))
    pool = _apply_pool(client, request, options, keep_workers=upgrade)
    done = [*changes[:-1], *([pool] if pool else [])]
    verb = "upgraded" if upgrade else "installed"
    frm = f" (from v{installed})" if upgrade and installed and installed != request.version else ""
    print(f"clrk v{request.version} {verb} in namespace {ns}{frm}: {_summary(done)}")


def _execute(ctx: typer.Context, request: Request, upgrade: bool,
             allow_downgrade: bool = False) -> None:
    if request.output not in (None, "yaml"):
        raise CLIError(f"unknown output format {request.output!r}: use yaml")
    if request.output == "yaml":
        print_manifests(request)
        return
    opts: Options = ctx.obj
    try:
        run(opts.client(), request, upgrade, allow_downgrade)
    except InstallError as err:
        raise CLIError(str(err)) from None


NamespaceOpt = Annotated[str, typer.Option(
    "--namespace", help="Namespace for the control plane (created when missing).")]
ControllerImageOpt = Annotated[str | None, typer.Option(
    "--controller-image", help="Controller-manager image (default: "
    "ghcr.io/apoxy-dev/clrk-controller-manager:v<version>).")]
WorkerImageOpt = Annotated[str | None, typer.Option(
    "--worker-image", help="Worker image for the default WorkerPool (default: "
    "ghcr.io/apoxy-dev/clrk-worker:v<version>).")]
PullSecretOpt = Annotated[str | None, typer.Option(
    "--image-pull-secret", help="Secret (in --namespace) with registry credentials for the "
    "images.")]
ClickHouseSecretOpt = Annotated[str | None, typer.Option(
    "--clickhouse-secret", help="Secret (in --namespace) whose `url` is a ClickHouse server's "
    "HTTP interface, http(s)://user:password@host:port/database (all but the host "
    "optional): telemetry goes there instead of chDB on the controller-manager's volume.")]
StorageClassOpt = Annotated[str | None, typer.Option(
    "--storage-class", help="StorageClass of the state volume (default: the cluster's default; "
    "an existing volume keeps its own).")]
RBACOpt = Annotated[RBACChoice, typer.Option(
    "--rbac", help="scoped: only the permissions clrk uses; cluster-admin: bind the "
    "controller manager to cluster-admin.")]
TLSOpt = Annotated[TLSChoice, typer.Option(
    "--tls", help="self-signed: a CA and serving certificate made here, kept in a Secret; "
    "cert-manager: an Issuer and Certificate, CA injected by cert-manager.")]
TimeoutOpt = Annotated[float, typer.Option(
    "--timeout", min=0, help="Seconds to wait for the control plane to serve.")]
DryRunOpt = Annotated[bool, typer.Option(
    "--dry-run", help="Print what would change, as a diff against the cluster; apply nothing.")]
OutputOpt = Annotated[str | None, typer.Option(
    "-o", "--output", help="yaml: print the manifests and touch nothing (no cluster needed).")]
YesOpt = Annotated[bool, typer.Option(
    "--yes", "-y", help="Do not ask for confirmation (never asked when stdin is not a "
    "terminal).")]
SkipWaitOpt = Annotated[bool, typer.Option(
    "--skip-wait", help="do not wait for the control plane to become ready")]


def install(
    ctx: typer.Context,
    namespace: NamespaceOpt = "clrk",
    controller_image: ControllerImageOpt = None,
    worker_image: WorkerImageOpt = None,
    image_pull_secret: PullSecretOpt = None,
    clickhouse_secret: ClickHouseSecretOpt = None,
    workers: Annotated[int, typer.Option(
        "--workers", min=0, help="Replicas of the default WorkerPool.")] = 1,
    storage_class: StorageClassOpt = None,
    rbac: RBACOpt = RBACChoice.scoped,
    tls: TLSOpt = TLSChoice.self_signed,
    timeout: TimeoutOpt = 300,
    dry_run: DryRunOpt = False,
    output: OutputOpt = None,
    yes: YesOpt = False,
    skip_wait: SkipWaitOpt = False,
) -> None:
    """Install clrk on a Kubernetes cluster (server-side apply, field manager `clrk`)."""
    _execute(ctx, Request(
        namespace=namespace, version=__version__, controller_image=controller_image,
        worker_image=worker_image, image_pull_secret=image_pull_secret,
        clickhouse_secret=clickhouse_secret, workers=workers,
        storage_class=storage_class, rbac=_RBAC[rbac], tls=_TLS[tls], timeout=timeout,
        dry_run=dry_run, output=output, yes=yes, skip_wait=skip_wait), upgrade=False)


def upgrade(
    ctx: typer.Context,
    namespace: NamespaceOpt = "clrk",
    version: Annotated[str, typer.Option(
        "--version", help="Version to upgrade to; the default images are tagged v<version>.")
    ] = __version__,
    controller_image: ControllerImageOpt = None,
    worker_image: WorkerImageOpt = None,
    image_pull_secret: Annotated[str | None, typer.Option(
        "--image-pull-secret", help="Secret (in --namespace) with registry credentials for the "
        "images (default: as installed).")] = None,
    clickhouse_secret: Annotated[str | None, typer.Option(
        "--clickhouse-secret", help="Secret (in --namespace) whose `url` is a ClickHouse "
        "server's HTTP interface for telemetry (default: as installed).")] = None,
    workers: Annotated[int | None, typer.Option(
        "--workers", min=0, help="Replicas of the default WorkerPool (default: keep the "
        "count in the cluster).")] = None,
    storage_class: StorageClassOpt = None,
    rbac: Annotated[RBACChoice | None, typer.Option(
        "--rbac", help="scoped or cluster-admin (default: as installed).")] = None,
    tls: Annotated[TLSChoice | None, typer.Option(
        "--tls", help="self-signed or cert-manager (default: as installed).")] = None,
    allow_downgrade: Annotated[bool, typer.Option(
        "--allow-downgrade", help="Allow moving to an older version than the installed one.")
    ] = False,
    timeout: TimeoutOpt = 300,
    dry_run: DryRunOpt = False,
    output: OutputOpt = None,
    yes: YesOpt = False,
    skip_wait: SkipWaitOpt = False,
) -> None:
    """Upgrade an installed clrk to a new version (keeps the worker count unless --workers)."""
    _execute(ctx, Request(
        namespace=namespace, version=version, controller_image=controller_image,
        worker_image=worker_image, image_pull_secret=image_pull_secret,
        clickhouse_secret=clickhouse_secret, workers=workers,
        storage_class=storage_class, rbac=_RBAC[rbac] if rbac else None,
        tls=_TLS[tls] if tls else None, timeout=timeout,
        dry_run=dry_run, output=output, yes=yes, skip_wait=skip_wait),
        upgrade=True, allow_downgrade=allow_downgrade)
