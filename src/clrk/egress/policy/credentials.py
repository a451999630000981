"""CredentialInjectionPolicy at the proxy: the Secret's value as a header (replacing
whatever the agent sent), a query parameter, or a provider signature. The value is
read from the worker's copy of the Secret and never written anywhere else."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode

from clrk.egress.policy import signing


class MissingCredential(Exception):
    """The policy names a Secret or key that is not there: the request is refused
    rather than sent without its credential."""


@dataclass
class Injection:
    set_headers: dict[str, str] = field(default_factory=dict)
    remove_headers: list[str] = field(default_factory=list)
    path: str | None = None
    secrets: list[str] = field(default_factory=list)  # values, to scrub from records
    # What went upstream and could come back: scrubbed from the answer (clrk.egress.scrub)
    scrub: list[str] = field(default_factory=list)
    needs_body: bool = False  # a signature covers the body


def secret_value(secrets: dict[str, dict[str, Any]], name: str, key: str) -> str:
    doc = secrets.get(name)
    if doc is None:
        raise MissingCredential(f"Secret {name} does not exist")
    data = doc.get("data") or {}
    if key in data:
        return base64.b64decode(data[key]).decode()
    if key in (doc.get("stringData") or {}):
        return str(doc["stringData"][key])
    raise MissingCredential(f"Secret {name} has no key {key}")


def with_query(path: str, name: str, value: str) -> str:
    bare, _, query = path.partition("?")
    pairs = [(k, v) for k, v in parse_qsl(query, keep_blank_values=True) if k != name]
    pairs.append((name, value))
    return f"{bare}?{urlencode(pairs)}"


async def inject(policies: list[dict[str, Any]], secrets: dict[str, dict[str, Any]],
                 method: str, host: str, path: str, headers: dict[str, str],
                 body: bytes | None, tokens: signing.GoogleTokens) -> Injection:
    out = Injection()
    for doc in policies:
        spec = doc["spec"]
        value = secret_value(secrets, spec["secretRef"]["name"], spec["secretKey"])
        out.secrets.append(value)
        target = spec.get("target") or "Header"
        if target == "Header":
            name = str(spec["headerName"]).lower()
            out.set_headers[name] = (spec.get("valuePrefix") or "") + value
            out.scrub.append(value)
        elif target == "QueryParam":
            out.path = with_query(out.path or path, str(spec["queryParamName"]), value)
            out.scrub.append(value)
        else:
            auth = spec.get("providerAuth") or {}
            if auth.get("type") == "AWSv4":
                signed = signing.sigv4(value, auth["awsv4"]["region"],
                                       auth["awsv4"]["service"], method, host,
                                       out.path or path, {**headers, **out.set_headers},
                                       body or b"")
                out.remove_headers += signed.remove
                out.set_headers.update(signed.headers)
                out.secrets += signed.secrets
                out.scrub += signed.scrub
            elif auth.get("type") == "GCPServiceAccount":
                token = await tokens.token(value)
                out.set_headers["authorization"] = f"Bearer {token}"
                out.secrets.append(token)
                out.scrub.append(token)  # the key itself never leaves the worker
    return out
