"""The `clrk` command: a typer app assembled from one module per command group."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from clrk import __version__
from clrk.api.crd import crds_yaml
from clrk.cli import agents, dev, global_flags, image, install, pools, resources, secret
from clrk.cli.context import Options
from clrk.cli.controller_manager import controller_manager
from clrk.cli.errors import run_guarded
from clrk.cli.worker import worker

app = typer.Typer(name="clrk", help="A runtime for untrusted LLM agents.",
                  no_args_is_help=True, pretty_exceptions_enable=False,
                  context_settings={"help_option_names": ["-h", "--help"]})


@app.callback()
def root(
    ctx: typer.Context,
    kubeconfig: Annotated[Path | None, typer.Option("--kubeconfig", envvar="CLRK_KUBECONFIG",
                                                    help="Path to a kubeconfig.")] = None,
    context: Annotated[str | None, typer.Option("--context", help="Kubeconfig context.")
                       ] = None,
    local: Annotated[bool, typer.Option("--local", help="Use the `clrk dev` kubeconfig.")
                     ] = False,
    namespace: Annotated[str | None, typer.Option("-n", "--namespace")] = None,
) -> None:
    ctx.obj = Options(kubeconfig=kubeconfig, context=context, local=local, namespace=namespace)


app.add_typer(dev.app, name="dev")
app.add_typer(secret.app, name="secret")
app.add_typer(image.app, name="image")
app.add_typer(agents.app, name="agents")
app.add_typer(pools.app, name="pools")
app.command()(resources.apply)
app.command()(resources.get)
app.command()(resources.delete)
app.command()(worker)
app.command("controller-manager")(controller_manager)
app.command()(install.install)
app.command()(install.upgrade)


@app.command()
def crds() -> None:
    """Print the CustomResourceDefinitions for installing into a real cluster."""
    print(crds_yaml(), end="")


@app.command()
def version() -> None:
    """Print the clrk version."""
    print(f"clrk {__version__}")


def main() -> None:
    command = typer.main.get_command(app)
    args = global_flags.hoist(command, sys.argv[1:])
    run_guarded(lambda: command(args, prog_name="clrk", standalone_mode=True))


if __name__ == "__main__":
    main()
