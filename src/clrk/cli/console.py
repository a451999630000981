"""`clrk console`: a one-time login link to the web console of the current context's API
server, printed and opened in a browser when there is one. The link is asked for with
the kubeconfig's own credentials and logs in once, within minutes; the browser then holds
a session cookie, never the token."""

from __future__ import annotations

import os
import sys
import webbrowser
from typing import Annotated

import typer

from clrk.cli.agent_api import fail, http
from clrk.cli.context import Options
from clrk.cli.errors import CLIError


def _has_display() -> bool:
    """Whether a graphical browser can open here (never a text-mode one in a terminal)."""
    return sys.platform == "darwin" or bool(os.environ.get("DISPLAY")
                                           or os.environ.get("WAYLAND_DISPLAY"))


def console(
    ctx: typer.Context,
    no_browser: Annotated[bool, typer.Option(
        "--no-browser", help="Only print the link.")] = False,
) -> None:
    """Open the web console: print a one-time login link (valid for 5 minutes) and open it
    in a browser where there is one."""
    opts: Options = ctx.obj
    with http(opts, 30) as (client, server):
        r = client.post(server + "/console/login-links")
        if r.status_code == 404:
            raise CLIError(
                "this context's server does not serve the clrk console (on a Kubernetes "
                "cluster kube-apiserver answers, and it forwards only the clrk API): "
                "port-forward the clrk API server, e.g. `kubectl -n clrk port-forward "
                "svc/clrk-apiserver 8443:443`, open https://localhost:8443/console/ and log "
                "in with a bearer token (docs/console.md)")
        if r.status_code != 200:
            fail(r)
        url = str(client.base_url).rstrip("/") + r.json()["path"]
    print(url)
    if not no_browser and _has_display():
        webbrowser.open(url)
