"""A client for the OCI distribution API: manifests, blobs, token auth.

Every blob is verified against its digest as it streams to disk. Plain HTTP is
used only for registries the worker was told are insecure.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from clrk.worker.images.reference import Reference

MANIFEST_TYPES = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v2+json",
)
INDEX_TYPES = MANIFEST_TYPES[0], MANIFEST_TYPES[2]
_CHALLENGE = re.compile(r'(\w+)="([^"]*)"')


class RegistryError(Exception):
    """A pull that failed; the message says what and where."""


@dataclass(frozen=True)
class Platform:
    os: str = "linux"
    architecture: str = "amd64"

    @classmethod
    def host(cls) -> Platform:
        machine = os.uname().machine
        return cls("linux", {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine))


@dataclass(frozen=True)
class Resolved:
    """A reference resolved to one platform's manifest."""

    digest: str  # of the platform manifest
    manifest: dict[str, Any]
    config: dict[str, Any]
    config_digest: str


def _why(err: Exception) -> str:
    """An error's message, or its kind where it has none (httpx's often do not)."""
    return str(err) or type(err).__name__


@dataclass
class RegistryClient:
    insecure: set[str] = field(default_factory=set)
    # registry host -> (username, password), from imagePullSecrets
    credentials: dict[str, tuple[str, str]] = field(default_factory=dict)
    platform: Platform = field(default_factory=Platform.host)
    timeout: float = 60.0
    _tokens: dict[tuple[str, str], str] = field(default_factory=dict)

    def _base(self, ref: Reference) -> str:
        scheme = "http" if ref.registry in self.insecure else "https"
        return f"{scheme}://{ref.api_host}/v2/{ref.repository}"

    async def _request(self, client: httpx.AsyncClient, ref: Reference, url: str,
                       headers: dict[str, str], stream: bool = False) -> httpx.Response:
        key = (ref.registry, ref.repository)
        for attempt in range(2):
            hdrs = dict(headers)
            if key in self._tokens:
                hdrs["Authorization"] = self._tokens[key]
            resp = await self._get(client, ref, url, hdrs, stream)
            if resp.status_code != 401 or attempt == 1:
                return resp
            challenge = resp.headers.get("www-authenticate", "")
            await resp.aclose()
            self._tokens[key] = await self._authenticate(client, ref, challenge)
        raise AssertionError("unreachable")

    async def _get(self, client: httpx.AsyncClient, ref: Reference, url: str,
                   headers: dict[str, str], stream: bool) -> httpx.Response:
        try:
            return await _resent_once(client, client.build_request("GET", url,
                                                                  headers=headers), stream)
        except httpx.HTTPError as err:
            raise RegistryError(f"registry {ref.registry} is unreachable: "
                                f"{_why(err)}") from None

    async def _authenticate(self, client: httpx.AsyncClient, ref: Reference,
                            challenge: str) -> str:
        creds = self.credentials.get(ref.registry)
        scheme = challenge.split(" ", 1)[0].lower()
        if scheme == "basic":
            if not creds:
                raise RegistryError(f"registry {ref.registry} needs credentials: add an "
                                    "imagePullSecret to the WorkerPool")
            return _basic(creds)
        if scheme != "bearer":
            raise RegistryError(f"registry {ref.registry} asked for unsupported auth "
                                f"{challenge!r}")
        params = dict(_CHALLENGE.findall(challenge))
        realm = params.pop("realm", "")
        if not realm:
            raise RegistryError(f"registry {ref.registry} sent a bearer challenge without realm")
        params.setdefault("scope", f"repository:{ref.repository}:pull")
        request = client.build_request("GET", realm, params=params)
        if creds:
            request.headers["Authorization"] = _basic(creds)
        try:
            resp = await _resent_once(client, request, stream=False)
        except httpx.HTTPError as err:
            raise RegistryError(f"token service {realm} is unreachable: {_why(err)}") \
                from None
        if resp.status_code != 200:
            raise RegistryError(f"registry {ref.registry} refused a pull token for "
                                f"{ref.repository} ({resp.status_code})")
        body = resp.json()
        token = body.get("token") or body.get("access_token")
        if not token:
            raise RegistryError(f"token service {realm} returned no token")
        return f"Bearer {token}"

    async def _manifest(self, client: httpx.AsyncClient, ref: Reference,
                        reference: str) -> tuple[str, dict[str, Any]]:
        resp = await self._request(client, ref, f"{self._base(ref)}/manifests/{reference}",
                                   {"Accept": ", ".join(MANIFEST_TYPES)})
        if resp.status_code == 404:
            raise RegistryError(f"image {ref} not found in {ref.registry}")
        if resp.status_code != 200:
            raise RegistryError(f"registry {ref.registry} answered {resp.status_code} for "
                                f"the manifest of {ref}")
        body = resp.content
        digest = "sha256:" + hashlib.sha256(body).hexdigest()
        if reference.startswith("sha256:") and reference != digest:
            raise RegistryError(f"manifest of {ref} does not match its digest {reference}")
        try:
            doc = json.loads(body)
        except ValueError:
            raise RegistryError(f"registry {ref.registry} sent an unreadable manifest") \
                from None
        return digest, doc

    async def resolve(self, ref: Reference) -> Resolved:
        async with httpx.AsyncClient(timeout=self.timeout) as client:
            digest, doc = await self._manifest(client, ref, ref.reference)
            media = doc.get("mediaType", "")
            if media in INDEX_TYPES or "manifests" in doc:
                wanted = self.platform
                match = next((m for m in doc.get("manifests", [])
                              if (m.get("platform") or {}).get("os") == wanted.os
                              and (m.get("platform") or {}).get("architecture")
                              == wanted.architecture), None)
                if match is None:
                    raise RegistryError(f"image {ref} has no {wanted.os}/{wanted.architecture}"
                                        " variant")
                digest, doc = await self._manifest(client, ref, match["digest"])
            config_desc = doc.get("config") or {}
            config_digest = config_desc.get("digest", "")
            data = await self._blob_bytes(client, ref, config_digest)
            return Resolved(digest, doc, json.loads(data), config_digest)

    async def _blob_bytes(self, client: httpx.AsyncClient, ref: Reference,
                          digest: str) -> bytes:
        resp = await self._request(client, ref, f"{self._base(ref)}/blobs/{digest}", {})
        if resp.status_code != 200:
            raise RegistryError(f"blob {digest} of {ref}: registry answered "
                                f"{resp.status_code}")
        if "sha256:" + hashlib.sha256(resp.content).hexdigest() != digest:
            raise RegistryError(f"blob {digest} of {ref} does not match its digest")
        return resp.content

    async def fetch_blob(self, ref: Reference, digest: str, dest: Path,
                         on_bytes: Callable[[int], None] = lambda n: None) -> None:
        """Stream a blob to ``dest`` (atomically), verifying its digest."""
        tmp = dest.with_suffix(".partial")
        h = hashlib.sha256()
        async with httpx.AsyncClient(timeout=self.timeout) as client:
            resp = await self._request(client, ref, f"{self._base(ref)}/blobs/{digest}", {},
                                       stream=True)
            try:
                if resp.status_code != 200:
                    raise RegistryError(f"blob {digest} of {ref}: registry answered "
                                        f"{resp.status_code}")
                with tmp.open("wb") as out:
                    async for chunk in resp.aiter_bytes(1 << 20):
                        h.update(chunk)
                        out.write(chunk)
                        on_bytes(len(chunk))
            finally:
                await resp.aclose()
        if "sha256:" + h.hexdigest() != digest:
            tmp.unlink(missing_ok=True)
            raise RegistryError(f"blob {digest} of {ref} does not match its digest")
        os.replace(tmp, dest)


def _basic(creds: tuple[str, str]) -> str:
    return "Basic " + base64.b64encode(f"{creds[0]}:{creds[1]}".encode()).decode()


async def _resent_once(client: httpx.AsyncClient, request: httpx.Request, stream: bool
                       ) -> httpx.Response:
    """A GET, sent again once when a kept-alive connection turned out closed by the server
    (a race every HTTP client meets; the GET is idempotent): registry and token service
    requests alike."""
    try:
        return await client.send(request, stream=stream, follow_redirects=True)
    except (httpx.RemoteProtocolError, httpx.ReadError):
        return await client.send(request, stream=stream, follow_redirects=True)
