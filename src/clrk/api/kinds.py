"""Imports every kind module so that each registers itself."""

from __future__ import annotations

from clrk.api import (  # noqa: F401
    agents,
    backend,
    core,
    gateway,
    invocation,
    policies,
    pricing,
    revision,
    routes,
    workerpool,
)
