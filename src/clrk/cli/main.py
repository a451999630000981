"""The `clrk` command: a typer app assembled from one module per command group.

Commands that are one function appear once here however many names they have: `clrk
logs` is `clrk agents logs`, registered from the same function."""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from clrk import __version__
from clrk.api.crd import crds_yaml
from clrk.cli import (
    agent_logs,
    agents,
    console,
    contexts,
    dev,
    get,
    global_flags,
    help_style,
    image,
    install,
    pools,
    resources,
    run_task,
    secret,
    status,
)
from clrk.cli.context import Options
from clrk.cli.controller_manager import controller_manager
from clrk.cli.errors import run_guarded
from clrk.cli.worker import worker
from clrk.kubeconfig import DEFAULT_HOME

app = typer.Typer(name="clrk", help="A runtime for untrusted LLM agents.",
                  no_args_is_help=True, pretty_exceptions_enable=False,
                  context_settings={"help_option_names": ["-h", "--help"]})


def _print_version(value: bool) -> None:
    if value:
        version()
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    kubeconfig: Annotated[Path | None, typer.Option(
        "--kubeconfig", envvar="CLRK_KUBECONFIG", metavar="PATH",
        help="Path to a kubeconfig (default: $KUBECONFIG, ~/.kube/config, else the "
             "`clrk dev` one).")] = None,
    context: Annotated[str | None, typer.Option(
        "--context", metavar="NAME", help="Kubeconfig context.")] = None,
    local: Annotated[bool, typer.Option("--local", help="Use the `clrk dev` kubeconfig.")
                     ] = False,
    namespace: Annotated[str | None, typer.Option(
        "-n", "--namespace", metavar="NAME",
        help="Namespace (default: the context's, else default).")] = None,
    data_dir: Annotated[Path, typer.Option(
        "--data-dir", envvar="CLRK_HOME", metavar="PATH",
        help="The `clrk dev` state directory: what `clrk dev`, `dev status`, `image` and "
             "--local use.")] = DEFAULT_HOME,
    _version: Annotated[bool, typer.Option(
        "--version", is_eager=True, callback=_print_version,
        help="Print the clrk version and exit.")] = False,
) -> None:
    ctx.obj = Options(kubeconfig=kubeconfig, context=context, local=local, namespace=namespace,
                      data_dir=data_dir)


app.add_typer(dev.app, name="dev")
app.add_typer(secret.app, name="secret")
app.add_typer(image.app, name="image")
app.add_typer(agents.app, name="agents")
app.add_typer(pools.app, name="pools")
app.add_typer(contexts.app, name="context")
app.command()(resources.apply)
app.command()(get.get)
app.command()(resources.delete)
app.command()(status.status)
app.command("logs")(agent_logs.logs)
app.command("traces")(agent_logs.traces)
app.command("run-task")(run_task.run_task)
app.command()(console.console)
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


def command() -> Any:
    """The click command tree of ``app``, its help tidied (``clrk.cli.help_style``)."""
    return help_style.tidy(typer.main.get_command(app))


def main() -> None:
    # Ctrl-C (SIGINT) ends a command even when its shell started it with SIGINT ignored,
    # as a background job of a script is: Python would keep the ignore, and `get -w` or
    # `logs -f` could then not be stopped (kubectl's Go runtime takes SIGINT back too).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    root_command = command()
    args = global_flags.hoist(root_command, sys.argv[1:])
    code = run_guarded(lambda: root_command.main(args, prog_name="clrk",
                                                 standalone_mode=False))
    raise SystemExit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
