"""Resource models: the single source of truth for defaults, validation, OpenAPI and CRDs.

Importing this package registers every kind with :mod:`clrk.api.registry`.
"""

from clrk.api import kinds as _kinds  # noqa: F401  (registers every kind)
from clrk.api.base import KindInfo, Model, PrinterColumn, Resource
from clrk.api.registry import all_kinds, by_kind, by_plural, lookup

__all__ = [
    "KindInfo",
    "Model",
    "PrinterColumn",
    "Resource",
    "all_kinds",
    "by_kind",
    "by_plural",
    "lookup",
]
