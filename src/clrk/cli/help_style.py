"""How `--help` reads: flags without typer's ``<bool>`` type label, as kubectl shows them.

Typer's rich help prints each option's type (``<bool>``, ``<str>``); for a flag, which
takes no value, that label only misleads (``--watch <bool>`` reads as if it wanted one).
A flag's metavar is never used otherwise, so an empty one drops the label. Options
that take a value keep theirs (or the metavar their command gives them). Commands are
read by their attributes (``params``, ``commands``): typer builds them on a click of its
own, not the ``click`` package. Colour and width are rich's: no ANSI escape when stdout
is not a terminal or NO_COLOR is set, 80 columns when piped."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any


def walk(command: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    """Every command under ``command`` (itself first), with the words that invoke it."""
    yield path, command
    for name, sub in sorted((getattr(command, "commands", None) or {}).items()):
        yield from walk(sub, (*path, name))


def _help_option(command: Any, names: list[str]) -> Any:
    """The command's -h/--help option: click makes it on first use and keeps it."""
    ctx = command.context_class(command, info_name=command.name, help_option_names=names)
    return command.get_help_option(ctx)


def tidy(root: Any) -> Any:
    """``root`` with its flags' type labels dropped from help, everywhere below it."""
    names = list((root.context_settings or {}).get("help_option_names") or ["--help"])
    for _, command in walk(root):
        for param in [*command.params, _help_option(command, names)]:
            if param is not None and getattr(param, "is_flag", False) \
                    and param.metavar is None:
                param.metavar = ""
    return root
