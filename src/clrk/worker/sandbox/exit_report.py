"""The agent's exit status, reported from inside the sandbox the moment the agent exits.

`runsc run` returns (and the stdio pipes reach EOF) only once gVisor has torn the whole
sandbox down, 25-55 ms after the agent's exit on this machine. A static busybox from the
host, bind-mounted read-only, runs as the sandbox's init: it runs the agent's argv
unchanged and, when it exits, writes one marker line with the status to stderr. The
worker answers at that line and lets the teardown happen in the background.

The marker carries a per-sandbox nonce so agent output cannot match it by accident; an
agent that forged it could only end its own execution early, which exiting does too.
Without busybox on the host the sandbox runs the agent directly (the EOF path).
"""

from __future__ import annotations

import re
import secrets
import shutil
from dataclasses import replace
from pathlib import Path

from clrk.worker.sandbox.spec import RunSpec

INIT = "/dev/.clrk/busybox"  # in /dev, the sandbox's own tmpfs (a mount point can be made);
# busybox picks its applet by the name it runs as, so the file keeps its name
_SCRIPT = "{unset}\"$@\"; printf 'clrk-exit-%s %d\\n' {nonce} $? >&2"
# What busybox sh would add to the agent's environment (unless the template sets it).
_SHELL_VARIABLES = ("SHLVL", "PWD", "OLDPWD", "PATH")


def host_busybox() -> Path | None:
    """The host's static busybox (Debian's busybox-static), usable in any image."""
    found = shutil.which("busybox") or "/bin/busybox"
    path = Path(found)
    return path if path.is_file() else None


def wrap(spec: RunSpec, busybox: Path) -> tuple[RunSpec, ExitReport]:
    report = ExitReport(secrets.token_hex(8))
    added = [v for v in _SHELL_VARIABLES if not any(e.startswith(f"{v}=") for e in spec.env)]
    script = _SCRIPT.format(unset=f"unset {' '.join(added)}; " if added else "",
                            nonce=report.nonce)
    argv = [INIT, "sh", "-c", script, "clrk-init", *spec.argv]
    return replace(spec, argv=argv, extra_mounts=[*spec.extra_mounts, (busybox, INIT)]), \
        report


class ExitReport:
    """Filters the sandbox's stderr: passes the agent's bytes on, keeps the marker out,
    and records the status it carries."""

    def __init__(self, nonce: str) -> None:
        self.nonce = nonce
        self._marker = f"clrk-exit-{nonce} ".encode()
        self._line = re.compile(re.escape(self._marker) + rb"(\d+)\n")
        self._held = b""
        self.code: int | None = None

    def feed(self, chunk: bytes) -> bytes:
        """The part of ``chunk`` that is the agent's. A possible start of the marker is
        held back until the next chunk shows what it is; the marker has no newline
        before its end, so only an unfinished line is ever held (no line is delayed)."""
        if self.code is not None:
            return chunk  # a leftover child of the agent writing after it exited
        data = self._held + chunk
        found = self._line.search(data)
        if found is not None:
            self.code = int(found.group(1))
            self._held = b""
            return data[:found.start()] + data[found.end():]
        start = data.find(self._marker[:1], max(0, len(data) - len(self._marker) - 24))
        while start != -1 and not self._could_begin(data[start:]):
            start = data.find(self._marker[:1], start + 1)
        if start == -1:
            self._held = b""
            return data
        self._held = data[start:]
        return data[:start]

    def _could_begin(self, tail: bytes) -> bool:
        marker = self._marker
        if len(tail) <= len(marker):
            return marker.startswith(tail)
        rest = tail[len(marker):]
        return tail.startswith(marker) and rest.isdigit()

    def flush(self) -> bytes:
        """At EOF: whatever was held back was the agent's after all."""
        held, self._held = self._held, b""
        return held
