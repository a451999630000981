"""Reading a kubeconfig's contexts and switching its current context in place.

The file is changed as little as possible: only the top-level ``current-context`` line
is replaced (or added), so comments, ordering and the other entries stay as written.
A file whose layout has no such line to replace (JSON, flow style) is rewritten whole.
The write is atomic and keeps the file's mode: a kubeconfig often carries a token."""

from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from clrk.cli.errors import CLIError

_CURRENT = re.compile(r"^current-context:[^\n]*$", re.MULTILINE)


@dataclass(frozen=True)
class ContextEntry:
    """One entry of a kubeconfig's ``contexts``."""

    name: str
    cluster: str
    user: str
    namespace: str


def _document(path: Path) -> dict[str, Any]:
    try:
        doc = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise CLIError(f"kubeconfig {path} is not valid YAML: {err}") from None
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        raise CLIError(f"kubeconfig {path} is not a mapping")
    return doc


def contexts(path: Path) -> tuple[list[ContextEntry], str]:
    """The file's contexts, in order, and its current-context ("" when unset)."""
    doc = _document(path)
    out = []
    for item in doc.get("contexts") or []:
        if not isinstance(item, dict) or not item.get("name"):
            continue
        ctx = item.get("context") or {}
        out.append(ContextEntry(str(item["name"]), str(ctx.get("cluster") or ""),
                                str(ctx.get("user") or ""), str(ctx.get("namespace") or "")))
    return out, str(doc.get("current-context") or "")


def use_context(path: Path, name: str) -> None:
    """Make ``name`` the file's current-context; a context it lacks is an error that
    names the ones it has."""
    entries, _ = contexts(path)
    names = [c.name for c in entries]
    if name not in names:
        have = ", ".join(names) if names else "none"
        raise CLIError(f'no context named "{name}" in {path} (contexts: {have})')
    text = path.read_text()
    wanted = {**_document(path), "current-context": name}
    line = yaml.safe_dump({"current-context": name}, width=1 << 16).rstrip("\n")
    found = len(_CURRENT.findall(text))
    if found == 1:
        edited = _CURRENT.sub(lambda _: line, text)
    elif found == 0:
        edited = text + ("" if text.endswith("\n") or not text else "\n") + line + "\n"
    else:
        edited = ""
    if _parsed(edited) != wanted:  # a layout the line edit does not fit: rewrite it whole
        edited = yaml.safe_dump(wanted, sort_keys=False)
    _write(path, edited)


def _parsed(text: str) -> Any:
    try:
        return yaml.safe_load(text) if text else None
    except yaml.YAMLError:
        return None


def _write(path: Path, text: str) -> None:
    """Replace the file atomically, keeping its mode (a symlink's target is replaced)."""
    target = path.resolve()
    mode = target.stat().st_mode & 0o7777
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
