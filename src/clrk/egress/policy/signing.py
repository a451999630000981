"""Provider signatures made at the proxy: AWS Signature Version 4 (botocore's own
signer, so what we sign is what AWS checks) and Google service-account OAuth tokens
(google-auth, cached and refreshed before they expire)."""

from __future__ import annotations

import asyncio
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

STALE_AWS = ("authorization", "x-amz-date", "x-amz-security-token", "x-amz-content-sha256")
GCP_SCOPES = ["https://www.googleapis.com/auth/cloud-platform"]


@dataclass
class Signed:
    headers: dict[str, str]
    remove: list[str]
    secrets: list[str] = field(default_factory=list)
    # Scrubbed from the answer: the session token goes upstream in clear, the access
    # key id too (it names the account); the secret key never does, but is scrubbed
    # all the same (an upstream could hold it).
    scrub: list[str] = field(default_factory=list)


def aws_keys(value: str) -> tuple[str, str, str | None]:
    """The Secret's AWS credentials: JSON (accessKeyId, secretAccessKey, sessionToken,
    or the AWS CLI's names) or ``aws_access_key_id = ...`` lines."""
    text = value.strip()
    found: dict[str, str] = {}
    if text.startswith("{"):
        try:
            doc = json.loads(text)
        except ValueError:
            doc = {}
        found = {str(k).lower().replace("_", ""): str(v) for k, v in doc.items()}
    else:
        for line in text.splitlines():
            k, sep, v = line.partition("=")
            if sep:
                found[k.strip().lower().replace("_", "")] = v.strip()
    key = found.get("accesskeyid") or found.get("awsaccesskeyid")
    secret = found.get("secretaccesskey") or found.get("awssecretaccesskey")
    if not key or not secret:
        from clrk.egress.policy.credentials import MissingCredential
        raise MissingCredential("the AWS credential needs accessKeyId and secretAccessKey")
    return key, secret, found.get("sessiontoken") or found.get("awssessiontoken")


def sigv4(value: str, region: str, service: str, method: str, host: str, path: str,
          headers: dict[str, str], body: bytes) -> Signed:
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    key, secret, token = aws_keys(value)
    keep = {k: v for k, v in headers.items()
            if not k.startswith(":") and k not in STALE_AWS and k not in (
                "content-length", "transfer-encoding", "connection")}
    keep["host"] = host
    request = AWSRequest(method=method, url=f"https://{host}{path}", data=body,
                         headers=keep)
    SigV4Auth(Credentials(key, secret, token), service, region).add_auth(request)
    signed = {k.lower(): v for k, v in request.headers.items()
              if k.lower() in ("authorization", "x-amz-date", "x-amz-security-token",
                               "x-amz-content-sha256")}
    stale = [h for h in headers if h.startswith("x-amz-") and h not in signed]
    return Signed(signed, stale, [secret] + ([token] if token else []),
                  [key, secret] + ([token] if token else []))


class GoogleTokens:
    """OAuth access tokens for service-account keys, one credential object per key."""

    def __init__(self) -> None:
        self._creds: dict[str, Any] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def token(self, key_json: str) -> str:
        from google.oauth2 import service_account

        ident = hashlib.sha256(key_json.encode()).hexdigest()
        lock = self._locks.setdefault(ident, asyncio.Lock())
        async with lock:
            creds = self._creds.get(ident)
            if creds is None:
                try:
                    info = json.loads(key_json)
                    creds = service_account.Credentials.from_service_account_info(  # type: ignore[no-untyped-call]
                        info, scopes=GCP_SCOPES)
                except (ValueError, KeyError) as err:
                    from clrk.egress.policy.credentials import MissingCredential
                    raise MissingCredential(f"invalid service-account key: {err}") from None
                self._creds[ident] = creds
            if not creds.valid:  # google-auth counts a token near expiry as invalid
                await asyncio.to_thread(_refresh, creds)
            return str(creds.token)


def _refresh(creds: Any) -> None:
    import google.auth.transport.requests

    creds.refresh(google.auth.transport.requests.Request())
