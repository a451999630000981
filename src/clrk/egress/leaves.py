"""Leaf certificates for terminated hostnames, signed by the gateway's CA.

One leaf per (CA, hostname), written where Envoy reads it, reused until a third of its
life is left, then reissued (``renew_due`` tells the worker when to regenerate the
configuration). A wildcard route host gets a wildcard leaf; names seen under it get
their own.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass
from pathlib import Path

from clrk import pki

VALID_DAYS = 30
RENEW_BEFORE = dt.timedelta(days=10)


@dataclass(frozen=True)
class Leaf:
    cert: Path
    key: Path
    expires: dt.datetime


class LeafCertificates:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._leaves: dict[tuple[str, str], Leaf] = {}

    def leaf(self, ca: pki.KeyPair, hostname: str) -> Leaf:
        ca_id = hashlib.sha256(ca.cert_pem).hexdigest()[:16]
        key = (ca_id, hostname)
        now = dt.datetime.now(dt.UTC)
        leaf = self._leaves.get(key)
        if leaf is not None and leaf.expires - now > RENEW_BEFORE:
            return leaf
        pair = pki.issue_leaf(ca, [hostname], valid_days=VALID_DAYS)
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        stem = hashlib.sha256(f"{ca_id}/{hostname}".encode()).hexdigest()[:24]
        cert, private = self.directory / f"{stem}.crt", self.directory / f"{stem}.key"
        pki.write_private(private, pair.key_pem)
        pki.write_private(cert, pair.cert_pem + ca.cert_pem)
        leaf = Leaf(cert, private, pair.cert.not_valid_after_utc)
        self._leaves[key] = leaf
        return leaf

    def renew_due(self) -> dt.datetime | None:
        """When the soonest leaf must be reissued (None: no leaves)."""
        if not self._leaves:
            return None
        return min(leaf.expires for leaf in self._leaves.values()) - RENEW_BEFORE
