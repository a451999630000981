"""Credential values Envoy injects by itself, as SDS files in memory-backed storage.

They live in /dev/shm (tmpfs, like a Kubernetes Secret volume), never under the data
directory, readable by root only, replaced atomically (Envoy watches the directory)
and removed when the worker stops.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

SHM = Path("/dev/shm")
SECRET = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret"


class SecretFiles:
    def __init__(self, state_dir: Path) -> None:
        tag = hashlib.sha256(str(state_dir.resolve()).encode()).hexdigest()[:12]
        self.directory = SHM / f"clrk-{tag}"

    def write(self, name: str, value: str) -> Path:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        path = self.directory / f"{name}.json"
        body = json.dumps({"resources": [{"@type": SECRET, "name": name,
                                          "generic_secret": {"secret": {
                                              "inline_string": value}}}]})
        if path.exists() and path.read_text() == body:
            return path
        tmp = self.directory / f".{name}.{hashlib.sha256(body.encode()).hexdigest()[:8]}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(body)
        os.replace(tmp, path)
        return path

    def remove(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)
