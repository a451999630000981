"""Global flags anywhere on the command line, as kubectl takes them: `clrk agents list
--local` means `clrk --local agents list`. Click reads a group's options only before its
subcommand, so the command line is reordered before it is parsed: each global flag (and
its value) that the invoked command does not define itself moves to the front.

Commands are read by their attributes (``params``, ``commands``, options' ``opts``): typer
builds them on a click of its own, not the ``click`` package."""

from __future__ import annotations

from typing import Any


def _options(command: Any) -> list[Any]:
    return [p for p in command.params if hasattr(p, "is_flag")]  # options, not arguments


def _global_options(root: Any) -> dict[str, bool]:
    """The root's option strings -> whether the option takes a value."""
    out: dict[str, bool] = {}
    for param in _options(root):
        if not param.hidden:
            for name in (*param.opts, *param.secondary_opts):
                out[name] = not param.is_flag
    out.pop("--help", None)
    out.pop("-h", None)
    return out


def _leaf(root: Any, args: list[str]) -> Any:
    """The command the arguments invoke (the deepest subcommand named)."""
    command = root
    for arg in args:
        commands = getattr(command, "commands", None)
        if commands is None:
            break
        sub = commands.get(arg)
        if sub is not None:
            command = sub
    return command


def hoist(root: Any, args: list[str]) -> list[str]:
    """``args`` with the root's options that appear after a subcommand moved before
    it, except where the invoked command has an option of the same name (e.g.
    `clrk install --namespace`) or after ``--``."""
    wanted = _global_options(root)
    leaf = _leaf(root, args)
    if leaf is root:
        return args
    own = {name for p in _options(leaf) for name in (*p.opts, *p.secondary_opts)}
    front: list[str] = []
    rest: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            rest += args[i:]
            break
        name = arg.split("=", 1)[0] if arg.startswith("--") else arg
        if name in wanted and name not in own:
            takes_value = wanted[name] and "=" not in arg
            front.append(arg)
            if takes_value and i + 1 < len(args):
                front.append(args[i + 1])
                i += 1
        else:
            rest.append(arg)
        i += 1
    return front + rest
