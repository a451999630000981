"""The clrk API server's serving certificate for ``--tls self-signed``: made once, then read
back from the cluster, so a second `clrk install` renders the same Secret and APIService
caBundle and changes nothing.

A fresh CA signs the leaf; only the CA certificate is kept (in the Secret's ``ca.crt`` and the
APIService's caBundle), never its key, so renewing the leaf means a new CA as well, which the
same apply rolls out to both places at once.
"""

from __future__ import annotations

import base64

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from lightkube import ApiError, Client
from lightkube.resources.core_v1 import Secret

from clrk import pki
from clrk.install.options import TLS_SECRET, ServingCert, serving_dns_names


def generate_serving(namespace: str) -> ServingCert:
    """A new CA and a serving certificate for the API Service's names in ``namespace``."""
    ca = pki.generate_ca(f"clrk apiserver CA ({namespace})")
    leaf = pki.issue_leaf(ca, serving_dns_names(namespace))
    return ServingCert(ca_pem=ca.cert_pem, cert_pem=leaf.cert_pem, key_pem=leaf.key_pem)


def usable(serving: ServingCert, namespace: str) -> bool:
    """Whether ``serving`` can be kept: parseable, signed by its CA, naming every Service
    name, with more than 30 days left."""
    try:
        cert = x509.load_pem_x509_certificate(serving.cert_pem)
        ca = x509.load_pem_x509_certificate(serving.ca_pem)
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return bool(serving.key_pem) and pki.serving_still_good(cert, serving_dns_names(namespace))


def read_serving(client: Client, namespace: str) -> ServingCert | None:
    """The serving certificate in the cluster's ``clrk-apiserver-tls`` Secret, or None when
    there is none or it lacks a key."""
    try:
        secret = client.get(Secret, TLS_SECRET, namespace=namespace)
    except ApiError as err:
        if err.status.code == 404:
            return None
        raise
    data = secret.data or {}
    try:
        values = {k: base64.b64decode(data[k]) for k in ("ca.crt", "tls.crt", "tls.key")}
    except (KeyError, ValueError):
        return None
    return ServingCert(ca_pem=values["ca.crt"], cert_pem=values["tls.crt"],
                       key_pem=values["tls.key"])


def serving_for(client: Client, namespace: str) -> ServingCert:
    """The certificate already installed when it is still usable, else a new one."""
    current = read_serving(client, namespace)
    if current is not None and usable(current, namespace):
        return current
    return generate_serving(namespace)
