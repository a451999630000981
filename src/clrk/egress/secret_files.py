"""Credential values Envoy injects by itself, as SDS files in memory-backed storage,
and the forms of each that its answers are scrubbed of (clrk.egress.scrub).

They live in /dev/shm (tmpfs, like a Kubernetes Secret volume), never under the data
directory, readable by root only, replaced atomically (Envoy watches the directory)
and removed when the worker stops. A credential's scrub file is written before its
SDS file and keeps the forms of the value it replaces: Envoy loads the SDS file a
moment after it changes and may inject the old value until then.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

from clrk.egress.envoy.scrubbing import pattern_text
from clrk.egress.scrub import Patterns

SHM = Path("/dev/shm")
SECRET = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret"


class SecretFiles:
    def __init__(self, state_dir: Path) -> None:
        tag = hashlib.sha256(str(state_dir.resolve()).encode()).hexdigest()[:12]
        self.directory = SHM / f"clrk-{tag}"
        self._scrubbed: dict[str, tuple[str, ...]] = {}  # name -> current, previous

    def write(self, name: str, value: str) -> Path:
        body = json.dumps({"resources": [{"@type": SECRET, "name": name,
                                          "generic_secret": {"secret": {
                                              "inline_string": value}}}]})
        return self._write(f"{name}.json", body)

    def write_scrub(self, name: str, secret: str) -> Path:
        """The forms of ``secret`` (and of the value it replaces) for the Lua filter
        that scrubs the answers of requests carrying it."""
        values = self._scrubbed.get(name, ())
        if not values or values[0] != secret:
            values = (secret, *values[:1])  # the current value, then the one it replaces
            self._scrubbed[name] = values
        return self._write(f"{name}.scrub", pattern_text(Patterns.of(values).items))

    def _write(self, file: str, body: str) -> Path:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        path = self.directory / file
        if path.exists() and path.read_text() == body:
            return path
        tmp = self.directory / f".{file}.{hashlib.sha256(body.encode()).hexdigest()[:8]}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(body)
        os.replace(tmp, path)
        return path

    def remove(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)
