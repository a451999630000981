"""EgressGateway controller: the per-gateway CA Secret, created once, never rotated."""

from __future__ import annotations

import base64
import logging
from collections.abc import Iterable
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from lightkube import AsyncClient
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import Secret
from lightkube.types import PatchType

from clrk import pki
from clrk.api.core import Secret as SecretKind
from clrk.api.gateway import EgressGateway
from clrk.client import create_if_absent, get_or_none, resource_class
from clrk.controllers import events
from clrk.controllers.conditions import set_condition
from clrk.controllers.runtime import Controller, Key, Watch

log = logging.getLogger("clrk.controllers")
LABEL = "clrk.apoxy.dev/egressgateway"


def ca_secret_name(gateway: str) -> str:
    return f"clrk-egressgateway-ca-{gateway}"


def check_ca(data: dict[str, str]) -> str | None:
    """Why the Secret's data is not a usable CA, or None when it is."""
    try:
        cert = x509.load_pem_x509_certificate(base64.b64decode(data["tls.crt"]))
        serialization.load_pem_private_key(base64.b64decode(data["tls.key"]), password=None)
    except KeyError as err:
        return f"missing key {err.args[0]}"
    except ValueError as err:
        return f"unreadable certificate or key: {err}"
    try:
        bc = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        return "the certificate is not a CA"
    return None if bc.ca else "the certificate is not a CA"


def gateway_controller(client: AsyncClient, concurrency: int) -> Controller:
    res = resource_class(EgressGateway)

    async def by_secret(obj: Any) -> Iterable[Key]:
        gw = (obj.metadata.labels or {}).get(LABEL)
        return [(obj.metadata.namespace or "", gw)] if gw else []

    async def reconcile(key: Key) -> float | None:
        ns, name = key
        gw = await get_or_none(client, res, name, ns)
        if gw is None or gw["metadata"].get("deletionTimestamp"):
            return None
        secret_name = ca_secret_name(name)
        problem: str | None = None
        secret = await get_or_none(client, Secret, secret_name, ns)
        if secret is not None:
            problem = check_ca(secret.get("data") or {})
        else:
            ca = pki.generate_ca(f"clrk egress gateway {ns}/{name}")
            data = {"tls.crt": ca.cert_pem, "tls.key": ca.key_pem, "ca.crt": ca.cert_pem}
            body = Secret(
                metadata=ObjectMeta(name=secret_name, namespace=ns, labels={LABEL: name}),
                type="kubernetes.io/tls",
                data={k: base64.b64encode(v).decode() for k, v in data.items()},
            )
            if await create_if_absent(client, body) is not None:
                log.info("created CA secret %s/%s", ns, secret_name)
                await events.emit(client, gw, "CACreated",
                                  f"created CA Secret {secret_name} (ECDSA P-256, 10 years)")
        status = dict(gw.get("status") or {})
        gen = gw["metadata"]["generation"]
        conds = set_condition(status.get("conditions") or [], "Accepted", True, "Valid",
                              "the spec is valid", gen)
        if problem:
            conds = set_condition(conds, "CAReady", False, "InvalidCASecret",
                                  f"Secret {secret_name} is not a usable CA ({problem}); it is "
                                  "never replaced automatically: fix or delete it", gen)
            if not any(c.get("type") == "CAReady" and c.get("status") == "False"
                       for c in status.get("conditions") or []):
                await events.emit(client, gw, "InvalidCASecret",
                                  f"Secret {secret_name}: {problem}", "Warning")
        else:
            conds = set_condition(conds, "CAReady", True, "CAReady",
                                  f"CA Secret {secret_name} is ready", gen)
        new = {**status, "observedGeneration": gen, "caSecretName": secret_name,
               "conditions": conds}
        if new != status:
            await client.patch(res.Status, name, {"status": new}, namespace=ns,
                               patch_type=PatchType.MERGE)
        return None

    return Controller(name="egressgateway", primary=EgressGateway, reconcile=reconcile,
                      concurrency=concurrency,
                      secondary=[Watch(SecretKind, by_secret)])

