"""Registry credentials from the Secrets a WorkerPool names in imagePullSecrets
(``kubernetes.io/dockerconfigjson`` or the older ``kubernetes.io/dockercfg``)."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any


class PullSecretError(ValueError):
    pass


def _host(key: str) -> str:
    """``https://index.docker.io/v1/`` and ``registry:5000`` both name a registry host."""
    host = key.split("://", 1)[-1].split("/", 1)[0]
    return "docker.io" if host in ("index.docker.io", "registry-1.docker.io") else host


def credentials(secret: dict[str, Any]) -> dict[str, tuple[str, str]]:
    name = secret.get("metadata", {}).get("name", "?")
    data = secret.get("data") or {}
    raw_key = ".dockerconfigjson" if ".dockerconfigjson" in data else ".dockercfg"
    if raw_key not in data:
        raise PullSecretError(f"Secret {name} has neither .dockerconfigjson nor .dockercfg")
    try:
        doc = json.loads(base64.b64decode(data[raw_key]))
    except (ValueError, binascii.Error) as err:
        raise PullSecretError(f"Secret {name}: {raw_key} is not base64 JSON: {err}") from None
    auths = doc.get("auths", {}) if raw_key == ".dockerconfigjson" else doc
    if not isinstance(auths, dict):
        raise PullSecretError(f"Secret {name}: auths must be an object")
    out: dict[str, tuple[str, str]] = {}
    for key, entry in auths.items():
        if not isinstance(entry, dict):
            raise PullSecretError(f"Secret {name}: auths[{key!r}] must be an object")
        user, password = entry.get("username"), entry.get("password")
        if (user is None or password is None) and entry.get("auth"):
            try:
                user, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
            except (ValueError, binascii.Error):
                raise PullSecretError(f"Secret {name}: auths[{key!r}].auth is not base64 "
                                      "user:password") from None
        if user is None or password is None:
            raise PullSecretError(f"Secret {name}: auths[{key!r}] has no username/password "
                                  "or auth")
        out[_host(key)] = (str(user), str(password))
    return out
