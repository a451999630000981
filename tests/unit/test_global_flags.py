"""Global flags before or after the subcommand, as kubectl takes them (`clrk agents get
echo-bot --local`, the quickstart's first check), without taking a subcommand's own
option of the same name."""

from __future__ import annotations

import subprocess

import pytest
import typer

from clrk.cli import global_flags
from clrk.cli.main import app
from tests.conftest import CLRK

ROOT = typer.main.get_command(app)


@pytest.mark.parametrize(("given", "parsed"), [
    (["agents", "get", "echo-bot", "--local"], ["--local", "agents", "get", "echo-bot"]),
    (["agents", "list", "-n", "team", "--context=c"],
     ["-n", "team", "--context=c", "agents", "list"]),
    (["get", "taskagents", "--kubeconfig", "k", "-o", "yaml"],
     ["--kubeconfig", "k", "get", "taskagents", "-o", "yaml"]),
    (["--local", "agents", "list"], ["--local", "agents", "list"]),
    # The command's own option of the same name stays its own.
    (["install", "--namespace", "x"], ["install", "--namespace", "x"]),
    (["controller-manager", "--kubeconfig", "k"], ["controller-manager", "--kubeconfig", "k"]),
    # After --, nothing is an option.
    (["agents", "logs", "x", "--", "--local"], ["agents", "logs", "x", "--", "--local"]),
])
def test_global_flags_move_before_the_subcommand(given: list[str], parsed: list[str]) -> None:
    assert global_flags.hoist(ROOT, given) == parsed


def test_the_command_line_takes_them_after_the_subcommand() -> None:
    r = subprocess.run([CLRK, "agents", "list", "--kubeconfig", "/nonexistent/kubeconfig"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "No such option" not in r.stderr, r.stderr
    assert r.stderr.strip() == "error: kubeconfig /nonexistent/kubeconfig does not exist"
